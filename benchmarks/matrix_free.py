"""Matrix-free Jacobian checks at the sizes of real invertible networks (run: `python -m benchmarks.matrix_free`).

For d = 16, 256, 3072 and 10⁴ (and the SympNet alone at 4096; `--dims` to choose; `--case fput-4096`: the trained FPUT-chain
G-SympNet of `g-sympnet-fput --size large` instead), each check runs in a fresh process (so that its peak memory is its
own): the whole numeric stage (`measure`, the default matrix-free Policy: a 40 s cost-aware search budget) of

* Symplectic on a G-SympNet (models/sympnets.py: 4 gradient kick/drift layers of width 64),
* VolumePreserving on an additive coupling flow (4 couplings, MLP width 64, fixed orthogonal mixing: det J = 1),
* LogDet and Invertible on a Glow-like flow (actnorm, 1×1 convolution over 3 channels (2 where 3 does not divide d),
  4 affine couplings of width 64, orthogonal mixing) that reports its log-determinant,

and, separately, the cost of one defect evaluation per input by the matrix-free path against the full-Jacobian path
(vmap(jacrev), the historical one) where the full one still fits (d ≤ 3072), in the same process, same inputs.

Memory is the peak resident set size of the child process (resource.getrusage ru_maxrss) minus its resident size
after the imports and the model were built (/proc/self/status VmRSS): what the check itself added, tensors and the
allocator's slack included. Time is wall-clock on this machine's CPU with one intra-op thread.
Writes reports/matrix-free.json and .md; `verify bench` folds the .md into reports/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DIMS = (16, 256, 3072, 4096, 10000)
CHECKS = ("Symplectic", "VolumePreserving", "LogDet", "Invertible")
ONLY = {4096: ("Symplectic",)}  # d = 4096: the high-dimensional SympNet's size (2d = 4096), symplecticity only


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _model(check: str, d: int) -> Any:
    from verify.models.wide_maps import CouplingFlow, sympnet

    if check == "Symplectic":
        return sympnet(d, width=64, seed=0)
    if check == "VolumePreserving":
        return CouplingFlow(d, width=64, seed=0).eval()
    return CouplingFlow(d, width=64, affine=True, channels=3 if d % 6 == 0 else 2, seed=0).eval()


def _prop(check: str) -> Any:
    from verify.properties import Invertible, Symplectic, VolumePreserving
    from verify.properties.log_det import LogDet

    return {"Symplectic": Symplectic, "VolumePreserving": VolumePreserving, "LogDet": LogDet,
            "Invertible": Invertible}[check]()


def child(check: str, d: int, mode: str) -> dict[str, Any]:
    """One case in this (fresh) process: `whole` (the numeric stage) or `per-input-<method>` (one defect evaluation)."""
    import torch

    torch.set_num_threads(1)
    from verify.checking import matrix_free as mf
    from verify.checking.domains import Box
    from verify.checking.numeric import measure
    from verify.properties.base import Probe

    model, prop = _model(check, d), _prop(check)
    base = _rss_mb()
    t0 = time.perf_counter()
    out: dict[str, Any] = {"check": check, "d": d, "mode": mode}
    if mode == "whole":
        ev = measure(prop, model, dim=d, depth=4, domain=Box([-1.0] * d, [1.0] * d), seed=0)
        out.update(verdict=ev.verdict.value, n_inputs=getattr(ev, "n_inputs", 0),
                   method=((getattr(ev, "search", {}) or {}).get("plan", {}).get("method", "full")
                           if hasattr(ev, "search") else "slq" if "stochastic Lanczos" in ev.summary else "-"),
                   summary=ev.summary[:300])
    else:
        method = mode.split("-", 2)[2]  # per-input-full | per-input-matrix-free
        x = torch.rand(4 if d < 1000 else 1, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
        m64 = model.double()
        with mf.using(method=method):
            prop.defects(Probe(m64, x[:1]))  # warm-up (path checks)
            t0 = time.perf_counter()
            with torch.no_grad():
                prop.defects(Probe(m64, x))
        out["per_input_seconds"] = (time.perf_counter() - t0) / x.shape[0]
    out["seconds"] = time.perf_counter() - t0
    out["peak_mb_above_base"] = _peak_mb() - base
    return out


# planted violations at scale, each confined to one coordinate (models/wide_maps.py), and the same models without them:
# (check, d, planted δ or 0 for the correct model); the search at Policy.seconds = 10
POWER = (("Symplectic", 4096, 1e-3), ("Symplectic", 4096, 1e-8), ("Symplectic", 4096, 0.0),
         ("VolumePreserving", 1024, 1e-3), ("VolumePreserving", 1024, 1e-8), ("VolumePreserving", 1024, 0.0),
         ("LogDet", 1026, 1e-3), ("LogDet", 1026, 0.0),
         ("Invertible", 3072, 1e-4), ("Invertible", 3072, 1e-10), ("Invertible", 3072, 0.0))


def power_child(check: str, d: int, delta: float) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from verify.checking import matrix_free as mf
    from verify.checking.domains import Box
    from verify.checking.numeric import measure
    from verify.models.wide_maps import BrokenInverse, NonSymplecticBlock, ScaledCoordinate

    model = _model(check, d)
    if delta:
        model = {"Symplectic": lambda: NonSymplecticBlock(model, delta, k=d // 3),
                 "VolumePreserving": lambda: ScaledCoordinate(model, delta, k=d // 3),
                 "LogDet": lambda: ScaledCoordinate(model, delta, k=d // 3, honest_log_det=False),
                 "Invertible": lambda: BrokenInverse(model, delta, k=d // 3)}[check]()
    t0 = time.perf_counter()
    with mf.using(seconds=10.0):
        ev = measure(_prop(check), model.eval(), dim=d, depth=4, domain=Box([-1.0] * d, [1.0] * d), seed=1)
    return {"check": check, "d": d, "delta": delta, "verdict": ev.verdict.value,
            "max_defect_float64": getattr(ev, "max_defect_float64", None),
            "tolerance_float64": getattr(ev, "tolerance_float64", None), "seconds": time.perf_counter() - t0}


# the trained G-SympNet of the FPUT-β chain at 2d = 4096 (models/sympnets.py, g-sympnet-fput --size large), checked end
# to end by check() as `verify check` does (its size's budget, the default Policy), and the same trained model with a
# planted non-symplectic 2×2 block (q_k ← (1 + δ)·q_k, k = d/3) among its 4096 coordinates: (label, planted δ or 0)
FPUT_CASES = (("trained", 0.0), ("trained + planted", 1e-6))


def fput_child(checkpoint: str, delta: float) -> dict[str, Any]:
    """One FPUT case in this (fresh) process: the trained large G-SympNet (from `checkpoint`, else trained or taken
    from the trained-model cache), Symplectic only, optionally with a planted block."""
    import torch

    torch.set_num_threads(1)
    from verify import check
    from verify.checking.domains import Box
    from verify.declare.registry import get, get_task
    from verify.models.wide_maps import NonSymplecticBlock
    from verify.properties import Symplectic
    from verify.train.training import load_checkpoint, train_cached

    arch = get("g-sympnet-fput")
    t0 = time.perf_counter()
    trained = load_checkpoint(checkpoint, arch) if checkpoint else train_cached(arch, "large")
    load_s = time.perf_counter() - t0
    base = _rss_mb()
    t0 = time.perf_counter()
    if delta:
        task = get_task(arch.task_for("large"))
        model = NonSymplecticBlock(trained.model, delta, k=task.d // 3).eval()
        result = check(model, claims=[Symplectic()], dim=task.dim, domain=Box(list(task.low), list(task.high)),
                       budget=arch.size("large").budget, rollout_steps=0)
    else:
        result = check("g-sympnet-fput", claims=[Symplectic()], size="large", model=trained.model, rollout_steps=0)
    ev = result.results[0].numeric
    search = getattr(ev, "search", {}) or {}
    return {"case": "fput-4096", "delta": delta, "verdict": result.results[0].verdict.value,
            "numeric_verdict": ev.verdict.value, "n_inputs": getattr(ev, "n_inputs", 0),
            "method": search.get("plan", {}).get("method", "-"), "numeric_seconds": ev.seconds,
            "check_seconds": time.perf_counter() - t0, "load_seconds": load_s,
            "max_defect_float64": getattr(ev, "max_defect_float64", None),
            "tolerance_float64": getattr(ev, "tolerance_float64", None),
            "test_loss": trained.test_loss, "train_seconds": trained.seconds, "origin": trained.origin,
            "peak_mb_above_base": _peak_mb() - base, "summary": ev.summary[:400]}


def fput_markdown(rows: list[dict[str, Any]], checkpoint: str) -> list[str]:
    lines = ["The trained G-SympNet of the FPUT-β chain at 2d = 4096 (`g-sympnet-fput --size large`), Symplectic checked "
             "end to end by check() with its size's budget and the default matrix-free Policy (40 s per claim), and "
             "the same model with a planted non-symplectic (q_k, p_k) block; `python -m benchmarks.matrix_free --case "
             f"fput-4096{' --checkpoint ' + checkpoint if checkpoint else ''}` (each case in a fresh process):", "",
             "| model | planted δ | method | verdict | inputs searched | numeric s | check s | float64 defect | "
             "float64 tolerance | peak MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        if "error" in x:
            lines.append(f"| fput-4096 | {x.get('delta', '')} | | error: {x['error']} | | | | | | |")
            continue
        m64, t64 = x.get("max_defect_float64"), x.get("tolerance_float64")
        lines.append(f"| G-SympNet 2d = 4096 (held-out MSE {x['test_loss']:.3g}) | {x['delta']:g} | {x['method']} | "
                     f"{x['verdict']} | {x['n_inputs']} | {x['numeric_seconds']:.1f} | {x['check_seconds']:.1f} | "
                     f"{'' if m64 is None else f'{m64:.3g}'} | {'' if t64 is None else f'{t64:.3g}'} | "
                     f"{x['peak_mb_above_base']:.0f} |")
    lines.append("")
    return lines


GLOW = "glow-shapes32"  # the registered d = 3072 Glow (models/flows_large.py), trained at its quick size


def glow_child(claim: str, stages: str) -> dict[str, Any]:
    """The registered Glow at d = 3072 (trained at its quick size, from the model cache when it is there), one claim
    checked by `verify.check` in this fresh process: `stages` = "numeric" (the numeric stage alone, as the other rows)
    or "all" (symbolic, binding and numeric). Training is timed apart from the check."""
    import torch

    torch.set_num_threads(1)
    import verify.models.flows_large  # noqa: F401  (registers glow-shapes32: an opt-in module)
    from verify import check
    from verify.train.training import train_cached

    t0 = time.perf_counter()
    trained = train_cached(GLOW, "quick", seed=0)
    train_s = time.perf_counter() - t0
    from verify.declare.registry import get

    prop = next(c for c in get(GLOW).claims if c.name == claim)
    base = _rss_mb()
    t0 = time.perf_counter()
    r = check(GLOW, claims=[prop], model=trained.model, symbolic=stages == "all", rollout_steps=0)
    seconds = time.perf_counter() - t0
    res = r.results[0]
    ev = res.numeric
    plan = ((getattr(ev, "search", {}) or {}).get("plan", {}) if ev is not None else {}) or {}
    return {"check": f"{claim} (Glow {GLOW})", "d": 3072, "mode": f"glow-{stages}", "verdict": res.verdict.value,
            "numeric_verdict": None if ev is None else ev.verdict.value, "n_inputs": getattr(ev, "n_inputs", 0),
            "method": plan.get("method", "-"), "numeric_seconds": None if ev is None else ev.seconds,
            "binding_seconds": None if res.binding is None else res.binding.seconds,
            "symbolic_seconds": None if res.symbolic is None else res.symbolic.seconds,
            "train_seconds": train_s, "train_origin": getattr(trained, "origin", ""), "seconds": seconds,
            "peak_mb_above_base": _peak_mb() - base, "summary": "" if ev is None else ev.summary[:300],
            "errors": r.errors}


def _spawn(check: str, d: int, mode: str, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.matrix_free", "--child", check, str(d), mode]
    env = {**os.environ, "VERIFY_THREADS": "1"}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"check": check, "d": d, "mode": mode, "error": f"did not finish within {timeout:g} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"check": check, "d": d, "mode": mode, "error": (p.stderr or p.stdout).strip().splitlines()[-1:]}


def run(dims: tuple[int, ...] = DIMS, checks: tuple[str, ...] = CHECKS) -> dict[str, Any]:
    import torch

    rows, ratios = [], []
    for d in dims:
        for check in checks:
            if d in ONLY and check not in ONLY[d]:
                continue
            rows.append(_spawn(check, d, "whole", 600))
            print(json.dumps(rows[-1]), flush=True)
            if d <= 3072 and check != "Invertible":  # the full path still fits (n² per input); Invertible needs κ only
                full = _spawn(check, d, "per-input-full", 600)
                free = _spawn(check, d, "per-input-matrix-free", 600)
                ratios.append({"check": check, "d": d, "full": full, "matrix_free": free})
                print(json.dumps(ratios[-1]), flush=True)
    machine = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
               "cpu_threads": 1, "cpus": os.cpu_count()}
    return {"machine": machine, "whole": rows, "per_input": ratios}


def to_markdown(r: dict[str, Any]) -> list[str]:
    lines = ["## Matrix-free Jacobian checks (d = 16 … 10⁴)", "",
             "Command: `python -m benchmarks.matrix_free` (each case in a fresh process; writes reports/matrix-free.json).",
             f"Machine: {r['machine']}. Memory: peak RSS of the case's process above its RSS after imports and model "
             "(resource.getrusage ru_maxrss − VmRSS). Times are wall-clock on a 2-core machine shared with other work (load average 6–9 during the recorded run), one intra-op thread. Whole check: the numeric stage with the default Policy (full "
             "Jacobians up to n = 64; above, Lanczos on products, or J assembled in blocks of rows for an exact LU up to "
             "n = 4096 and a stochastic estimate (undecided) beyond; search budget scaled to 40 s).", "",
             "| check | d | method | verdict | inputs searched | seconds | peak MB |", "|---|---|---|---|---|---|---|"]
    for x in r["whole"]:
        if "error" in x:
            lines.append(f"| {x['check']} | {x['d']} | | error: {x['error']} | | | |")
            continue
        lines.append(f"| {x['check']} | {x['d']} | {x['method']} | {x['verdict']} | {x['n_inputs']} | "
                     f"{x['seconds']:.1f} | {x['peak_mb_above_base']:.0f} |")
    lines += ["", "One defect evaluation per input (float64; 4 inputs below d = 1000, 1 above), full Jacobian vs matrix-free, same process "
              "kind and inputs:", "", "| check | d | full s/input | full peak MB | matrix-free s/input | matrix-free "
              "peak MB | time ratio full / matrix-free |", "|---|---|---|---|---|---|---|"]
    for x in r["per_input"]:
        f, m = x["full"], x["matrix_free"]
        if "error" in f or "error" in m:
            lines.append(f"| {x['check']} | {x['d']} | {f.get('error', '')} | | {m.get('error', '')} | | |")
            continue
        lines.append(f"| {x['check']} | {x['d']} | {f['per_input_seconds']:.3g} | {f['peak_mb_above_base']:.0f} | "
                     f"{m['per_input_seconds']:.3g} | {m['peak_mb_above_base']:.0f} | "
                     f"{f['per_input_seconds'] / max(m['per_input_seconds'], 1e-12):.2g} |")
    lines.append("")
    return lines


def section(out: Path) -> str:
    """The saved section for reports/benchmarks.md (empty when the benchmark has not been run into `out`)."""
    path = out / "matrix-free.json"
    if not path.is_file():
        return ""
    lines = to_markdown(json.loads(path.read_text()))
    glow = out / "matrix-free-glow.json"
    if glow.is_file():
        lines += glow_markdown(json.loads(glow.read_text()))
    power = out / "matrix-free-power.json"
    if power.is_file():
        lines += power_markdown(json.loads(power.read_text()))
    fput = out / "matrix-free-fput-4096.json"
    if fput.is_file():
        lines += fput_markdown(json.loads(fput.read_text()), "")
    return "\n".join(lines)


def power_markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["Planted violations at scale, each confined to one coordinate of d (a non-symplectic (q_k, p_k) block, a "
             "coordinate scaled by 1 + δ, a log-det omitting that scale, an inverse off by δ on one coordinate), and "
             "the same models without them; `python -m benchmarks.matrix_free --power` (search at Policy.seconds = 10, "
             "seed 1):", "", "| check | d | planted δ | verdict | float64 defect | float64 tolerance | seconds |",
             "|---|---|---|---|---|---|---|"]
    for x in rows:
        if "error" in x:
            lines.append(f"| {x['check']} | {x['d']} | | error: {x['error']} | | | |")
            continue
        m64, t64 = x.get("max_defect_float64"), x.get("tolerance_float64")
        lines.append(f"| {x['check']} | {x['d']} | {x['delta']:g} | {x['verdict']} | "
                     f"{'' if m64 is None else f'{m64:.3g}'} | {'' if t64 is None else f'{t64:.3g}'} | {x['seconds']:.1f} |")
    lines.append("")
    return lines


def glow_markdown(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"The registered Glow at d = 3072 ({GLOW}: 3 levels, 2 steps each, trained at its quick size), each claim "
             "checked by `verify.check` in a fresh process; `python -m benchmarks.matrix_free --glow numeric` (or "
             "`--glow all` for the symbolic and binding stages too):", "",
             "| claim | stages | method | verdict | inputs searched | check s | numeric s | binding s | peak MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for x in rows:
        if "error" in x:
            lines.append(f"| {x['check']} | {x['mode']} | | error: {x['error']} | | | | | |")
            continue
        b = x.get("binding_seconds")
        lines.append(f"| {x['check']} | {x['mode'][5:]} | {x['method']} | {x['verdict']} | {x['n_inputs']} | "
                     f"{x['seconds']:.1f} | {x['numeric_seconds'] or 0:.1f} | {'' if b is None else f'{b:.1f}'} | "
                     f"{x['peak_mb_above_base']:.0f} |")
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports")
    ap.add_argument("--dims", default=",".join(map(str, DIMS)))
    ap.add_argument("--checks", default=",".join(CHECKS))
    ap.add_argument("--child", nargs=3, metavar=("CHECK", "D", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--power", action="store_true", help="only the planted-violation table (reports/matrix-free-power.json)")
    ap.add_argument("--case", choices=("fput-4096",), help="only this case: fput-4096, the trained large G-SympNet "
                    "(OUT/matrix-free-fput-4096.json)")
    ap.add_argument("--checkpoint", default="", help="with --case fput-4096: the checkpoint folder of g-sympnet-fput "
                    "--size large (default: train it, or take it from the trained-model cache)")
    ap.add_argument("--glow", choices=("numeric", "all"), help="only the registered d = 3072 Glow (glow-shapes32): each "
                    "claim checked in a fresh process, the numeric stage alone or every stage (reports/matrix-free-glow.json)")
    args = ap.parse_args(argv)
    if args.child and args.child[0] == "fput-4096":
        print(json.dumps(fput_child(args.child[2], float(args.child[1]))), flush=True)
        return 0
    if args.case == "fput-4096":
        rows = [_spawn("fput-4096", delta, args.checkpoint, 1200) for _label, delta in FPUT_CASES]  # type: ignore[arg-type]
        for r in rows:
            print(json.dumps(r), flush=True)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "matrix-free-fput-4096.json").write_text(json.dumps(rows, indent=1))
        print("\n".join(fput_markdown(rows, args.checkpoint)))
        return 0
    if args.child and args.child[2].startswith("glow-"):
        print(json.dumps(glow_child(args.child[0], args.child[2][5:])), flush=True)
        return 0
    if args.glow:
        rows = [_spawn(claim, 3072, f"glow-{args.glow}", 1800) for claim in ("Invertible", "LogDet")]
        for row in rows:
            print(json.dumps(row), flush=True)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "matrix-free-glow.json").write_text(json.dumps(rows, indent=1))
        print("\n".join(glow_markdown(rows)))
        return 0
    if args.child and args.child[2].startswith("power:"):
        print(json.dumps(power_child(args.child[0], int(args.child[1]), float(args.child[2][6:]))), flush=True)
        return 0
    if args.power:
        rows = []
        for check, d, delta in POWER:
            rows.append(_spawn(check, d, f"power:{delta!r}", 600))
            print(json.dumps(rows[-1]), flush=True)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "matrix-free-power.json").write_text(json.dumps(rows, indent=1))
        return 0
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.child[2])), flush=True)
        return 0
    r = run(tuple(int(d) for d in args.dims.split(",")), tuple(args.checks.split(",")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix-free.json").write_text(json.dumps(r, indent=1))
    (out / "matrix-free.md").write_text("\n".join(to_markdown(r)))
    print("\n".join(to_markdown(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
