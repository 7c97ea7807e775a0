"""Training on the project's own data, and checkpoints that load without executing code.

Checkpoints are a safetensors file of the state dict plus a JSON record (architecture,
size, configuration, seed, loss history, sha256 of the tensors file, training fingerprint).
Loading verifies the hash and the keys, so a truncated or foreign file is refused with a
message rather than half-loaded.

Training is deterministic (same code, data, settings and seed: the same weights, bit for bit), so a
checkpoint whose *training fingerprint* matches the one computed now is what training would produce
again: `verify report --cache` loads it instead of retraining. The fingerprint covers everything
training reads: the architecture's size (configuration, steps, learning rate, data size, batch), the
seed and device type, the source of the models package, of the architecture's own module and of this
trainer, the library versions, and, as measured values, the initial weights, the training and
held-out data and the initial model's output on the data (so a change in a dependency that moves any
of them, e.g. the image rotation that makes the digits task, is caught too).
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from verify.errors import CheckpointError
from verify.registry import Architecture, get, get_task

TENSORS = "model.safetensors"
RECORD = "checkpoint.json"


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present (or asked for), the CPU otherwise."""
    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise CheckpointError("device", requested, "a device present on this machine", "use --device cpu or omit it")
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _source_files(arch: Architecture) -> list[Path]:
    """The source files whose text the fingerprint covers: the models package, the architecture's own module (a
    plugin's lives elsewhere), this trainer and the registry (sizes, building)."""
    files = {Path(__file__).resolve(), Path(sys.modules["verify.registry"].__file__).resolve()}
    models_pkg = sys.modules.get("models")
    if models_pkg is not None and getattr(models_pkg, "__file__", None):
        files.update(p.resolve() for p in Path(models_pkg.__file__).parent.glob("*.py"))
    try:
        own = inspect.getsourcefile(arch.factory)
    except TypeError:  # a builtin or C-defined factory: nothing of ours to hash
        own = None
    if own:
        files.add(Path(own).resolve())
    return sorted(files)


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "torch": torch.__version__}
    for lib in ("numpy", "escnn", "scipy"):
        mod = sys.modules.get(lib)
        if mod is not None:
            out[lib] = str(getattr(mod, "__version__", "?"))
    return out


def _hash_tensor(h: "hashlib._Hash", name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
    h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())


def training_fingerprint(arch: Architecture, size: str, seed: int, device: torch.device | str,
                         model: torch.nn.Module | None = None,
                         data: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> str:
    """sha256 of everything training reads (module docstring); `model`/`data` as train() built them, else rebuilt.

    Rebuilding costs what training's own set-up costs (the model and the datasets), not the training steps.
    """
    spec = arch.size(size)
    task = get_task(arch.task)
    if model is None:
        torch.manual_seed(seed)
        model = arch.build(size)
    if data is None:
        data = (*task.dataset(spec.n_train, seed), *task.dataset(256, seed + 10_000))
    h = hashlib.sha256()
    h.update(json.dumps({"architecture": arch.name, "size": size, "spec": dataclasses.asdict(spec), "seed": seed,
                         "task": arch.task, "device": torch.device(device).type, "versions": _versions()},
                        sort_keys=True, default=repr).encode())
    for path in _source_files(arch):
        h.update(path.name.encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    for name, t in sorted(model.state_dict().items()):
        _hash_tensor(h, name, t)
    for name, t in zip(("x", "y", "x_test", "y_test"), data):
        _hash_tensor(h, name, t)
    # the initial output is measured on a second instance with the same weights, so the model about to be trained is
    # left exactly as it was (escnn caches filters in eval mode; a deepcopy fails on some modules) and the global random
    # state that training continues from is not consumed
    with torch.random.fork_rng(devices=[]):
        probe = arch.build(size)
    probe.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    probe.eval()
    with torch.no_grad():
        out = probe(data[0][:64].to(torch.float32))
    _hash_tensor(h, "initial_output", out if isinstance(out, torch.Tensor) else torch.as_tensor(out))
    return h.hexdigest()


def cached_checkpoint(directory: Path | str, arch: Architecture, size: str, seed: int,
                      device: str | None = None) -> tuple[bool, str]:
    """(True, why) when the checkpoint in `directory` is what training would produce now, (False, why) otherwise."""
    record_path = Path(directory) / RECORD
    if not record_path.is_file():
        return False, "no checkpoint yet"
    try:
        record = json.loads(record_path.read_text())
    except ValueError:
        return False, "the checkpoint record is not JSON"
    if record.get("size") != size or record.get("seed") != seed:
        return False, f"the checkpoint is size {record.get('size')!r}, seed {record.get('seed')}"
    if "fingerprint" not in record:
        return False, "the checkpoint has no training fingerprint (saved before fingerprints were recorded)"
    now = training_fingerprint(arch, size, seed, pick_device(device))
    if record["fingerprint"] != now:
        return False, "the training fingerprint differs (code, data, settings or library versions changed)"
    return True, f"training fingerprint {now[:12]} matches"


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
    fingerprint: str | None = None  # of everything training read (training_fingerprint)
    origin: str = "trained"  # or why a checkpoint was loaded instead


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
    model = arch.build(size)
    data = (*task.dataset(spec.n_train, seed), *task.dataset(256, seed + 10_000))
    fingerprint = training_fingerprint(arch, size, seed, dev, model=model, data=data)
    model = model.to(dev)
    x, y, xt, yt = (_cast(t, dev) for t in data)
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
        test_loss=test_loss, seconds=time.perf_counter() - start, steps=spec.steps, fingerprint=fingerprint,
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
        **({"fingerprint": trained.fingerprint} if trained.fingerprint else {}),
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
        fingerprint=record.get("fingerprint"), origin="loaded from the checkpoint",
    )

