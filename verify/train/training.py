"""Training on the project's own data, and checkpoints that load without executing code.

Checkpoints are a safetensors file of the state dict plus a JSON record (architecture,
size, configuration, seed, loss history, sha256 of the tensors file). Loading
verifies the hash and the keys, so a truncated or foreign file is refused with a
message rather than half-loaded.
"""
from __future__ import annotations

import hashlib
import json
import math
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


def train(
    arch: Architecture | str,
    size: str = "quick",
    *,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
    out_dir: Path | str | None = None,
) -> Trained:
    """Fit the architecture to its task's one-step flow map (mean squared error, Adam)."""
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
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
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

