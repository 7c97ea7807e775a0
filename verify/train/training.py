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

from verify.errors import CheckpointError
from verify.declare.registry import Architecture, get, get_task

TENSORS = "model.safetensors"
RECORD = "checkpoint.json"


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present (or asked for), the CPU otherwise."""
    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise CheckpointError("device", requested, "a device present on this machine", "use --device cpu or omit it")
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    """Fit the architecture to its task's one-step flow map (mean squared error, Adam).

    The model is built, and trained, under torch's default dtype as it was when the architecture was declared
    (Architecture.default_dtype), and the task's data is cast to the model's own floating dtype: a model in float64
    (a library that switched the default) trains in float64, one in float32 in float32. A model whose parameters mix
    floating dtypes is refused with a message."""
    arch = get(arch) if isinstance(arch, str) else arch
    if arch.task is None:
        raise CheckpointError("task", None, "an architecture with a training task", f"declare task=... on {arch.name}")
    with arch.declared_defaults():
        return _train(arch, size, seed=seed, device=device, progress=progress, out_dir=out_dir)


def training_dtype(model: torch.nn.Module, name: str = "the model") -> torch.dtype:
    """The one floating dtype of the model's parameters (buffers when it has none; torch's default when neither)."""
    for label, group in (("parameters", list(model.parameters())), ("buffers", list(model.buffers()))):
        kinds = sorted({str(t.dtype) for t in group if t.is_floating_point()})
        if len(kinds) > 1:
            raise CheckpointError(
                f"dtypes of {name}'s {label}", kinds, "one floating dtype", f"cast the model to one dtype (model.to(torch.float32) or "
                "model.to(torch.float64)) in its factory")
        if kinds:
            return getattr(torch, kinds[0].replace("torch.", ""))
    return torch.get_default_dtype()


def _train(arch: Architecture, size: str, *, seed: int, device: str | None, progress: bool,
           out_dir: Path | str | None) -> Trained:
    from tqdm.auto import tqdm

    from verify.precision import remember_factory

    spec = arch.size(size)
    dev = pick_device(device)
    task = get_task(arch.task)
    torch.manual_seed(seed)
    model = arch.build(size).to(dev)
    remember_factory(model, lambda: arch.build(size))
    dtype = training_dtype(model, arch.name)
    x, y = (_cast(t, dev, dtype) for t in task.dataset(spec.n_train, seed))
    xt, yt = (_cast(t, dev, dtype) for t in task.dataset(256, seed + 10_000))
    loss_fn = getattr(task, "loss", None) or _mse
    params = [p for p in model.parameters() if p.requires_grad]
    steps = spec.steps if params else 0  # a parameter-free model has nothing to fit: it is checked as it is
    history: list[float] = []
    start = time.perf_counter()
    if steps:
        opt = torch.optim.Adam(params, lr=spec.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec.steps, eta_min=spec.lr / 20)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        model.train()
        bar = tqdm(range(steps), desc=f"train {arch.name} [{size}]", disable=not progress, leave=False)
        for _ in bar:
            idx = torch.randint(0, x.shape[0], (min(spec.batch, x.shape[0]),), generator=gen).to(dev)
            loss = loss_fn(model(x[idx].clone()), y[idx])
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
        test_loss = float(loss_fn(model(xt.clone()), yt))
    trained = Trained(
        architecture=arch.name, size=size, model=model, seed=seed, device=str(dev), history=history,
        test_loss=test_loss, seconds=time.perf_counter() - start, steps=steps,
    )
    if out_dir is not None:
        trained.checkpoint = str(save_checkpoint(trained, arch, Path(out_dir)))
    return trained


def _cast(t: torch.Tensor, dev: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # features train in the model's dtype; integer targets (class labels) keep their dtype
    return t.to(dev, dtype) if t.is_floating_point() else t.to(dev)


def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((pred - target) ** 2)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(trained: Trained, arch: Architecture, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()}
    save_file(tensors, str(directory / TENSORS))
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
        "sha256": _sha256(directory / TENSORS),
    }
    (directory / RECORD).write_text(json.dumps(record, indent=1))
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
    from verify.precision import remember_factory

    remember_factory(model, lambda: found.build(size))
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

