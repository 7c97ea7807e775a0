"""The trained-model cache: the same code, config and seed load what was trained before; anything else retrains."""
import torch

from verify.declare.registry import Size, architecture, get, unregister
from verify.properties import Symplectic
from verify.train import training
from verify.train.training import cache_key, train_cached

from test_declared_options import Kick  # a one-parameter symplectic kick, trained on the pendulum


def _register(name, steps=5, lr=1e-2):
    architecture(name, claims=[Symplectic()], task="pendulum", sizes={"quick": Size(config={}, steps=steps, lr=lr)})(Kick)


def test_a_second_run_loads_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIFY_CACHE", str(tmp_path))
    _register("cache-kick")
    try:
        first = train_cached("cache-kick", seed=3)
        second = train_cached("cache-kick", seed=3)
        assert not first.cached and second.cached
        assert torch.equal(first.model.c, second.model.c) and second.history == first.history
        other_seed = train_cached("cache-kick", seed=4)
        assert not other_seed.cached
    finally:
        unregister("cache-kick")


def test_the_key_changes_with_the_size_and_the_code(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIFY_CACHE", str(tmp_path))
    dev = torch.device("cpu")
    _register("cache-key")
    try:
        k1 = cache_key(get("cache-key"), "quick", 0, dev)
    finally:
        unregister("cache-key")
    _register("cache-key", lr=2e-2)
    try:
        k2 = cache_key(get("cache-key"), "quick", 0, dev)
    finally:
        unregister("cache-key")
    assert k1 and k2 and k1 != k2
    k1_again = None
    _register("cache-key")
    try:
        k1_again = cache_key(get("cache-key"), "quick", 0, dev)
        # the code is part of the key: any change to a source file the fingerprint covers is another key
        real = training._source_files
        monkeypatch.setattr(training, "_source_files", lambda arch: real(arch)[1:])
        assert cache_key(get("cache-key"), "quick", 0, dev) != k1
    finally:
        unregister("cache-key")
    assert k1_again == k1  # the same code, size and seed: the same key again


def test_a_damaged_entry_is_retrained_never_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIFY_CACHE", str(tmp_path))
    _register("cache-bad")
    try:
        train_cached("cache-bad")
        entry = next(p for p in tmp_path.iterdir() if p.is_dir())
        (entry / training.TENSORS).write_bytes(b"not a tensor file")
        again = train_cached("cache-bad")
        assert not again.cached
        assert train_cached("cache-bad").cached  # and the entry was rewritten whole
    finally:
        unregister("cache-bad")


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIFY_CACHE", "off")
    _register("cache-off")
    try:
        assert not train_cached("cache-off").cached and not train_cached("cache-off").cached
    finally:
        unregister("cache-off")
