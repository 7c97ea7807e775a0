"""Training on the project's own data, and checkpoints that load without executing code.

Checkpoints are a safetensors file of the state dict plus a JSON record (architecture,
size, configuration, seed, loss history, sha256 of the tensors file). Loading
verifies the hash and the keys, so a truncated or foreign file is refused with a
message rather than half-loaded.
"""
from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from verify.errors import CheckpointError, InputError
from verify.files import atomic_write_text, hook, staged_folder
from verify.declare.registry import Architecture, get, get_task

TENSORS = "model.safetensors"
RECORD = "checkpoint.json"


def pick_device(requested: str | None = None, what: str = "device") -> torch.device:
    """CUDA when present (or asked for), the CPU otherwise; a device that is not there is refused with a fix."""
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    fix = "pass --device cpu, or --device cuda on a machine with a CUDA GPU (or leave it out: CUDA when present)"
    try:
        dev = torch.device(requested)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(what, requested, "cpu, cuda or cuda:N", fix) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CheckpointError(what, requested, "a device present on this machine (there is no CUDA GPU here)", fix)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(what, requested, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1} (the GPUs present)", fix)
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise InputError(what, requested, "a device present on this machine (no MPS here)", fix)
    elif dev.type != "cpu":
        raise InputError(what, requested, "cpu, cuda or cuda:N", fix)
    return dev


@dataclass
class Trained:
    architecture: str
    size: str
    model: torch.nn.Module
    seed: int
    device: str
    history: list[float] = field(default_factory=list)
    test_loss: float = math.nan
    seconds: float = 0.0
    steps: int = 0
    checkpoint: str | None = None
    cached: bool = False  # loaded from the trained-model cache (the same code, config and seed trained it before)


def train(
    arch: Architecture | str,
    size: str = "quick",
    *,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
    out_dir: Path | str | None = None,
) -> Trained:
    """Fit the architecture to its task (its loss, else mean squared error) with the size's optimiser (Adam by default)."""
    from tqdm.auto import tqdm

    arch = get(arch) if isinstance(arch, str) else arch
    if arch.task is None:
        raise CheckpointError("task", None, "an architecture with a training task", f"declare task=... on {arch.name}")
    spec = arch.size(size)
    dev = pick_device(device)
    task = get_task(arch.task)
    torch.manual_seed(seed)
    model = arch.build(size).to(dev)
    x, y = (_cast(t, dev) for t in task.dataset(spec.n_train, seed))
    xt, yt = (_cast(t, dev) for t in task.dataset(256, seed + 10_000))
    loss_fn = getattr(task, "loss", None) or _mse
    opt = spec.make_optimizer(model.parameters())
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec.steps, eta_min=spec.lr / 20)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    history: list[float] = []
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(spec.steps), desc=f"train {arch.name} [{size}]", disable=not progress, leave=False)
    for _ in bar:
        idx = torch.randint(0, x.shape[0], (min(spec.batch, x.shape[0]),), generator=gen).to(dev)
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        if not math.isfinite(history[-1]):
            raise CheckpointError(
                "training loss", history[-1], "a finite loss", f"lower the learning rate of {arch.name} (lr={spec.lr})"
            )
        if len(history) % 50 == 0:
            bar.set_postfix(loss=f"{history[-1]:.2e}")
    model.eval()
    with torch.no_grad():
        test_loss = float(loss_fn(model(xt), yt))
    trained = Trained(
        architecture=arch.name, size=size, model=model, seed=seed, device=str(dev), history=history,
        test_loss=test_loss, seconds=time.perf_counter() - start, steps=spec.steps,
    )
    if out_dir is not None:
        trained.checkpoint = str(save_checkpoint(trained, arch, Path(out_dir)))
    return trained


def _cast(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    # features train in float32; integer targets (class labels) keep their dtype
    return t.to(dev, torch.float32) if t.is_floating_point() else t.to(dev)


def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((pred - target) ** 2)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(trained: Trained, arch: Architecture, directory: Path) -> Path:
    """Write the tensors and their record into a staging folder, then swap it in for `directory` as one unit: an
    interrupt at any moment leaves the previous checkpoint (tensors and record together) or the new one."""
    directory = Path(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()}
    with staged_folder(directory) as stage:
        save_file(tensors, str(stage / TENSORS))
        hook("checkpoint-tensors-written")
        record = {
            "architecture": arch.name,
            "size": trained.size,
            "config": dict(arch.size(trained.size).config),
            "seed": trained.seed,
            "device": trained.device,
            "steps": trained.steps,
            "seconds": trained.seconds,
            "test_loss": trained.test_loss,
            "history": trained.history,
            "torch": torch.__version__,
            "sha256": _sha256(stage / TENSORS),
        }
        atomic_write_text(stage / RECORD, json.dumps(record, indent=1))
    return directory


def load_checkpoint(directory: Path | str, arch: Architecture | str | None = None, device: str | None = None) -> Trained:
    """Load a checkpoint directory; every way it can be wrong gets its own message and fix."""
    directory = Path(directory)
    record_path, tensors_path = directory / RECORD, directory / TENSORS
    retrain = "retrain it with `verify train NAME` (or delete the folder so `verify report` retrains)"
    for p in (record_path, tensors_path):
        if not p.is_file():
            raise CheckpointError("checkpoint file", str(p), "an existing file", retrain)
    try:
        record = json.loads(record_path.read_text())
        name, size = record["architecture"], record["size"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError("checkpoint record", str(record_path), "JSON with architecture, size, sha256", retrain) from exc
    expected = get(arch) if isinstance(arch, str) else arch
    if expected is not None and expected.name != name:
        raise CheckpointError("checkpoint architecture", name, f"{expected.name!r}", "point at the right checkpoint folder")
    found = expected or get(name)
    if record.get("sha256") != _sha256(tensors_path):
        raise CheckpointError("checkpoint tensors", str(tensors_path), "the file whose sha256 the record holds (it is truncated or replaced)", retrain)
    try:
        state = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError("checkpoint tensors", str(tensors_path), "a readable safetensors file", retrain) from exc
    if dict(found.size(size).config) != record.get("config"):
        raise CheckpointError("checkpoint config", record.get("config"), f"{dict(found.size(size).config)} (the registered {size} size)", retrain)
    model = found.build(size)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            "checkpoint keys", {"missing": result.missing_keys, "unexpected": result.unexpected_keys},
            "exactly the model's state_dict keys", retrain,
        )
    dev = pick_device(device)
    model.to(dev).eval()
    return Trained(
        architecture=name, size=size, model=model, seed=record.get("seed", 0), device=str(dev),
        history=list(record.get("history", [])), test_loss=record.get("test_loss", math.nan),
        seconds=record.get("seconds", 0.0), steps=record.get("steps", 0), checkpoint=str(directory),
    )



# -- the trained-model cache -------------------------------------------------------------------------------------
# xdist workers and repeated runs train the same (architecture, size, seed) again and again; training is most of a
# quick check's time. The cache key hashes everything training depends on, the code included, so a changed model,
# task, size or trainer is a miss, never a stale hit.
CACHE_ENV = "VERIFY_CACHE"  # a folder; "off" disables the cache


def cache_root() -> Path | None:
    """Where trained models are cached: $VERIFY_CACHE, else ~/.cache/structure-verify/trained; None when disabled."""
    value = os.environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in ("", "off", "0", "no", "false"):
        return None
    if value:
        return Path(value).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "structure-verify" / "trained"


def _package_sources(obj: object) -> list[Path]:
    """Source files of every loaded module of the package that defines obj (the whole package: a model's code spans
    files), plus the trainer itself; empty when obj has no source file (then nothing is cached)."""
    module = getattr(obj, "__module__", None) or ""
    try:
        own = inspect.getsourcefile(obj)  # type: ignore[arg-type]
    except TypeError:
        own = None
    if not module or own is None:
        return []
    top = module.split(".")[0]
    files = {Path(own).resolve(), Path(__file__).resolve()}
    for name, mod in list(sys.modules.items()):
        if name == top or name.startswith(top + "."):
            f = getattr(mod, "__file__", None)
            if f and f.endswith(".py"):
                files.add(Path(f).resolve())
    return sorted(files)


def cache_key(arch: Architecture, size: str, seed: int, device: torch.device) -> str | None:
    """A name for this training run's result, or None when it cannot be keyed safely (no source to hash)."""
    spec = arch.size(size)
    task = get_task(arch.task) if arch.task else None
    sources = _package_sources(arch.factory) + (_package_sources(type(task)) if task is not None else [])
    if not sources:
        return None
    h = hashlib.sha256()
    optimizer = spec.optimizer if isinstance(spec.optimizer, str) else getattr(spec.optimizer, "__qualname__", None)
    if optimizer is None or "<lambda>" in optimizer or "<locals>" in optimizer:
        return None  # a local callable has no stable name to key on
    for part in (arch.name, size, seed, device.type, torch.__version__, str(torch.get_default_dtype()), arch.task,
                 json.dumps(dict(spec.config), sort_keys=True, default=repr), spec.steps, spec.lr, spec.n_train,
                 spec.batch, optimizer, json.dumps(dict(spec.optimizer_options), sort_keys=True, default=repr)):
        h.update(repr(part).encode() + b"\0")
    for f in sorted(set(sources)):
        h.update(str(f).encode() + b"\0" + f.read_bytes())
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in arch.name)
    return f"{safe}-{size}-s{seed}-{device.type}-{h.hexdigest()[:20]}"


def train_cached(arch: Architecture | str, size: str = "quick", *, seed: int = 0, device: str | None = None,
                 progress: bool = False) -> Trained:
    """train(), or its result from the cache when the same code, config and seed trained it before.

    Concurrent callers (xdist workers) of one key are serialised by a file lock: one trains, the others load. A
    cache entry that does not load (truncated, foreign) is discarded and retrained, never trusted.
    """
    arch = get(arch) if isinstance(arch, str) else arch
    root = cache_root()
    dev = pick_device(device)
    key = None if root is None else cache_key(arch, size, seed, dev)
    if key is None:
        return train(arch, size, seed=seed, device=device, progress=progress)
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if entry.is_dir():
            try:
                trained = load_checkpoint(entry, arch, device=device)
                trained.cached = True
                return trained
            except CheckpointError:
                shutil.rmtree(entry, ignore_errors=True)
        trained = train(arch, size, seed=seed, device=device, progress=progress)
        tmp = root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            save_checkpoint(trained, arch, tmp)
            os.rename(tmp, entry)  # whole or nothing: a reader never sees half an entry
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # a full disk or a read-only cache costs the cache, not the check
        trained.checkpoint = None
        return trained
