"""Training and checkpoints: reproducible, loadable without executing code, refused when damaged."""
import json

import pytest
import torch

from verify.checking.api import check
from verify.errors import CheckpointError
from verify.train.training import load_checkpoint, train


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "g-sympnet"
    return train("g-sympnet", "quick", seed=3, out_dir=out), out


def test_roundtrip_restores_the_same_map(saved):
    trained, out = saved
    loaded = load_checkpoint(out, "g-sympnet")
    x = torch.randn(16, 2)
    assert torch.equal(trained.model(x), loaded.model(x))
    assert not loaded.model.training and loaded.seed == 3 and len(loaded.history) == trained.steps


def test_training_is_reproducible_from_the_seed(saved):
    trained, _ = saved
    again = train("g-sympnet", "quick", seed=3)
    assert again.history == trained.history


def test_checkpoint_is_plain_safetensors_and_json(saved):
    _, out = saved
    assert (out / "model.safetensors").read_bytes()[:8]  # header length, not a pickle opcode stream
    record = json.loads((out / "checkpoint.json").read_text())
    assert record["architecture"] == "g-sympnet" and len(record["sha256"]) == 64


def test_missing_checkpoint_says_how_to_fix(tmp_path):
    with pytest.raises(CheckpointError, match="verify train"):
        load_checkpoint(tmp_path / "nowhere", "g-sympnet")


def test_truncated_checkpoint_is_refused(saved, tmp_path):
    _, out = saved
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.json").write_text((out / "checkpoint.json").read_text())
    (bad / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(bad, "g-sympnet")


def test_corrupt_record_is_refused(saved, tmp_path):
    bad = tmp_path / "bad2"
    bad.mkdir()
    (bad / "checkpoint.json").write_text("{not json")
    (bad / "model.safetensors").write_bytes(b"xx")
    with pytest.raises(CheckpointError, match="JSON"):
        load_checkpoint(bad)


def test_checkpoint_of_another_architecture_is_refused(saved):
    _, out = saved
    with pytest.raises(CheckpointError, match="la-sympnet"):
        load_checkpoint(out, "la-sympnet")


def test_check_with_broken_checkpoint_reports_error_and_keeps_symbolic(tmp_path):
    result = check("g-sympnet", checkpoint=tmp_path / "missing", rollout_steps=0)
    assert result.errors and not result.passed
    for r in result.results:
        assert r.symbolic.verdict.value == "proved"  # the symbolic stage still ran and is kept
        assert r.numeric.verdict.value == "error" and r.verdict.value == "error"


def test_report_is_written_even_when_a_stage_failed(tmp_path):
    from verify.report.pages import write_architecture

    result = check("g-sympnet", checkpoint=tmp_path / "missing", rollout_steps=0)
    folder = write_architecture(result, tmp_path / "reports")
    page = (folder / "README.md").read_text()
    assert "error" in page and "verify train" in page and "proved" in page  # failure named, symbolic kept
    assert json.loads((folder / "report.json").read_text())["errors"]


def test_cache_hits_only_when_everything_training_reads_is_unchanged(saved, tmp_path):
    """`verify report --cache` loads a checkpoint only when its training fingerprint matches: the same code, data,
    settings, seed and library versions give the same weights (training is deterministic), anything else retrains."""
    from verify.declare.registry import Size, architecture, get, unregister
    from verify.train.training import cached_checkpoint, training_fingerprint

    trained, out = saved
    arch = get("g-sympnet")
    assert trained.fingerprint == json.loads((out / "checkpoint.json").read_text())["fingerprint"]
    hit, why = cached_checkpoint(out, arch, "quick", 3)
    assert hit and "matches" in why
    assert not cached_checkpoint(out, arch, "quick", 4)[0]  # another seed
    # the same module and task, another learning rate: another training run
    spec = arch.size("quick")
    architecture("test-g-sympnet-lr", claims=list(arch.claims), task=arch.task,
                 sizes={"quick": Size(config=dict(spec.config), steps=spec.steps, lr=spec.lr / 2, n_train=spec.n_train,
                                      batch=spec.batch)})(arch.factory)
    try:
        assert training_fingerprint(get("test-g-sympnet-lr"), "quick", 3, "cpu") != trained.fingerprint
    finally:
        unregister("test-g-sympnet-lr")
    # a checkpoint saved before fingerprints were recorded is a miss, and says why
    old = tmp_path / "old"
    old.mkdir()
    record = json.loads((out / "checkpoint.json").read_text())
    record.pop("fingerprint")
    (old / "checkpoint.json").write_text(json.dumps(record))
    hit, why = cached_checkpoint(old, arch, "quick", 3)
    assert not hit and "no training fingerprint" in why


def test_report_with_cache_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIFY_CACHE", "off")  # the report folder's own cache is under test, not the home cache
    from verify.cli import main

    args = ["report", "g-sympnet", "--size", "quick", "--out", str(tmp_path), "--quiet", "--rollout-steps", "0",
            "--inputs", "256", "--examples", "10", "--cache"]
    assert main(args) == 0
    first = json.loads((tmp_path / "g-sympnet" / "report.json").read_text())["training"]
    assert first["origin"] == "trained" and first["fingerprint"]
    assert main(args) == 0
    second = json.loads((tmp_path / "g-sympnet" / "report.json").read_text())
    assert second["training"]["origin"].startswith("loaded from the cache") and second["passed_as_expected"]
    assert second["training"]["fingerprint"] == first["fingerprint"]
    assert "loaded from the cache" in (tmp_path / "g-sympnet" / "README.md").read_text()
