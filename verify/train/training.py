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
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from verify.errors import CheckpointError, InputError
from verify.files import atomic_write_text, hook, staged_folder
from verify.declare.registry import Architecture, get, get_task

TENSORS = "model.safetensors"
CACHE_ORIGIN = "loaded from the trained-model cache"
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


def _source_files(arch: Architecture) -> list[Path]:
    """The source files whose text the fingerprint covers: the models package, this trainer and the registry (sizes,
    building), and every loaded module of the package that declares the architecture (a plugin's model spans files)."""
    files = {Path(__file__).resolve(), Path(sys.modules["verify.declare.registry"].__file__).resolve()}
    models_pkg = sys.modules.get("verify.models")
    if models_pkg is not None and getattr(models_pkg, "__file__", None):
        files.update(p.resolve() for p in Path(models_pkg.__file__).parent.glob("*.py"))
    try:
        own = inspect.getsourcefile(arch.factory)
    except TypeError:  # a builtin or C-defined factory: nothing of ours to hash
        own = None
    if own:
        files.add(Path(own).resolve())
    for claim in arch.claims:  # a property that records along training: its recorder's code shapes the record
        if callable(getattr(claim.property, "training_recorder", None)):
            src = inspect.getsourcefile(type(claim.property))
            if src:
                files.add(Path(src).resolve())
    top = (getattr(arch.factory, "__module__", None) or "").split(".")[0]
    if top and top != "verify":  # the built-in package is covered above (the engine's code does not change training)
        for name, mod in list(sys.modules.items()):
            f = getattr(mod, "__file__", None)
            if (name == top or name.startswith(top + ".")) and f and f.endswith(".py"):
                files.add(Path(f).resolve())
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
    task = get_task(arch.task_for(size))
    if model is None:
        torch.manual_seed(seed)
        model = arch.build(size)
    if data is None:
        data = (*task.dataset(spec.n_train, seed), *task.dataset(256, seed + 10_000))
    h = hashlib.sha256()
    spec_fields = dataclasses.asdict(spec)
    for key in ("task", "budget"):  # unset (the default): fingerprinted as before Size had these fields; the budget
        if spec_fields.get(key) is None:  # does not change training, but it is part of the size as declared
            spec_fields.pop(key, None)
    h.update(json.dumps({"architecture": arch.name, "size": size, "spec": spec_fields, "seed": seed,
                         "default_dtype": str(torch.get_default_dtype()),
                         "task": arch.task_for(size), "device": torch.device(device).type, "versions": _versions()},
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
        out = probe(data[0][:64].to(training_dtype(probe, arch.name)))
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
    # per claim name, what the claim's property recorded along training (its `training_recorder` hook: OnManifold's
    # defect every K steps); kept in the checkpoint record, so a cached model carries the record of its training
    records: dict[str, Any] = field(default_factory=dict)

    @property
    def cached(self) -> bool:
        """Loaded from the trained-model cache (the same fingerprint trained it before)."""
        return self.origin.startswith(CACHE_ORIGIN)


def train(
    arch: Architecture | str,
    size: str = "quick",
    *,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
    out_dir: Path | str | None = None,
) -> Trained:
    """Fit the architecture to its task (its loss, else mean squared error) with the size's optimiser (Adam by default).

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
    task = get_task(arch.task_for(size))
    torch.manual_seed(seed)
    model = arch.build(size)
    data = (*task.dataset(spec.n_train, seed), *task.dataset(256, seed + 10_000))
    try:
        fingerprint: str | None = training_fingerprint(arch, size, seed, dev, model=model, data=data)
    except Exception:  # noqa: BLE001 - a model the fingerprint cannot probe is trained all the same, just never cached
        fingerprint = None
    model = model.to(dev)
    remember_factory(model, lambda: arch.build(size))
    dtype = training_dtype(model, arch.name)
    x, y, xt, yt = (_cast(t, dev, dtype) for t in data)
    loss_fn = getattr(task, "loss", None) or _mse
    # a task whose objective needs more of the model than its output (a flow's likelihood reads its reported log-det)
    # defines model_loss(model, x, y); every other task scores model(x) against y
    model_loss = getattr(task, "model_loss", None)

    def objective(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return model_loss(model, xb, yb) if callable(model_loss) else loss_fn(model(xb), yb)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = spec.steps if params else 0  # a parameter-free model has nothing to fit: it is checked as it is
    history: list[float] = []
    recorders: dict[str, Any] = {}
    start = time.perf_counter()
    if steps:
        opt = spec.make_optimizer(params)
        _check_optimizer(opt, spec.optimizer, arch.name)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec.steps, eta_min=spec.lr / 20)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        model.train()
        recorders = _recorders(arch, model, steps)
        for rec in recorders.values():
            rec.record(0, model)
        bar = tqdm(range(steps), desc=f"train {arch.name} [{size}]", disable=not progress, leave=False)
        for _ in bar:
            idx = torch.randint(0, x.shape[0], (min(spec.batch, x.shape[0]),), generator=gen).to(dev)
            loss = objective(x[idx].clone(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            history.append(float(loss.detach()))
            for rec in recorders.values():
                if rec.due(len(history)):
                    rec.record(len(history), model)
            if not math.isfinite(history[-1]):
                raise CheckpointError(
                    "training loss", history[-1], "a finite loss", f"lower the learning rate of {arch.name} (lr={spec.lr})"
                )
            if len(history) % 50 == 0:
                bar.set_postfix(loss=f"{history[-1]:.2e}")
    model.eval()
    with torch.no_grad():
        test_loss = float(objective(xt.clone(), yt))
    trained = Trained(
        architecture=arch.name, size=size, model=model, seed=seed, device=str(dev), history=history,
        test_loss=test_loss, seconds=time.perf_counter() - start, steps=steps, fingerprint=fingerprint,
        records={name: rec.result() for name, rec in recorders.items()} if steps else {},
    )
    if out_dir is not None:
        trained.checkpoint = str(save_checkpoint(trained, arch, Path(out_dir)))
    return trained


def _check_optimizer(opt: Any, named: Any, arch_name: str) -> None:
    """The object Size(optimizer=...) made must be a torch optimiser: step(), zero_grad(), its param_groups (the
    learning-rate schedule sets their lr) and its per-parameter state (Adam's moments, a Riemannian optimiser's
    transported momentum); anything else is refused before the first step, with what it lacks."""
    lacking = [a for a in ("step", "zero_grad", "param_groups", "state") if not hasattr(opt, a)]
    if lacking or not isinstance(getattr(opt, "param_groups", None), list) or not hasattr(getattr(opt, "state", None), "get"):
        raise InputError(f"Size(optimizer=...) of {arch_name}", f"{named!r} made a {type(opt).__name__}"
                         + (f" without {', '.join(lacking)}" if lacking else " whose param_groups/state are not a torch "
                                                                              "optimiser's"),
                         "a torch.optim.Optimizer: step(), zero_grad(), param_groups (a list) and state (a mapping "
                         "per parameter, where momentum methods keep their velocity)",
                         "name an optimiser class (e.g. 'torch.optim.Adam', 'geoopt.optim.RiemannianAdam'), or make the "
                         "callable return a torch.optim.Optimizer subclass")


def _recorders(arch: Architecture, model: torch.nn.Module, steps: int) -> dict[str, Any]:
    """Per claim whose property offers `training_recorder(model, steps)` (OnManifold), its recorder: an object with
    `due(step)`, `record(step, model)` (never raising) and `result()` (JSON-ready). The engine knows nothing else of it.
    A hook that cannot start is kept as a record holding its error, so the claim says why (error, never holds)."""
    out: dict[str, Any] = {}
    for claim in arch.claims:
        hook = getattr(claim.property, "training_recorder", None)
        if not callable(hook):
            continue
        try:
            out[claim.name] = hook(model, steps)
        except Exception as exc:  # noqa: BLE001 - the claim reports it
            out[claim.name] = _FailedRecorder(f"{type(exc).__name__}: {exc}")
    return out


@dataclass
class _FailedRecorder:
    error: str

    def due(self, step: int) -> bool:
        return False

    def record(self, step: int, model: torch.nn.Module) -> None:
        return None

    def result(self) -> dict[str, Any]:
        return {"error": f"before training: {self.error}"}


def _cast(t: torch.Tensor, dev: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # features train in the model's dtype; integer targets (class labels) keep their dtype
    return t.to(dev, dtype) if t.is_floating_point() else t.to(dev)


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
            "records": trained.records,
            "torch": torch.__version__,
            "sha256": _sha256(stage / TENSORS),
            **({"fingerprint": trained.fingerprint} if trained.fingerprint else {}),
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
        fingerprint=record.get("fingerprint"), origin="loaded from the checkpoint",
        records=dict(record.get("records") or {}),
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


def cache_key(arch: Architecture, size: str, seed: int, device: torch.device) -> str | None:
    """A name for this training run's result: the training fingerprint (everything training reads, code included),
    or None when it cannot be computed or would not be stable (then nothing is cached)."""
    spec = arch.size(size)
    if not isinstance(spec.optimizer, str) and any(
            part in getattr(spec.optimizer, "__qualname__", "<lambda>") for part in ("<lambda>", "<locals>")):
        return None  # a local callable has no stable identity to key on
    try:
        fingerprint = training_fingerprint(arch, size, seed, device)
    except Exception:  # noqa: BLE001 - see train(): no fingerprint, no cache
        return None
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in arch.name)
    return f"{safe}-{size}-s{seed}-{device.type}-{fingerprint[:24]}"


def train_cached(arch: Architecture | str, size: str = "quick", *, seed: int = 0, device: str | None = None,
                 progress: bool = False) -> Trained:
    """train(), or its result from the cache when the same training fingerprint (code, data, settings, seed, library
    versions, initial weights and output) trained it before: training is deterministic, so that is the same model.

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
                trained.origin = f"{CACHE_ORIGIN} ({entry.name})"
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
