"""The round-off law of the Jacobian properties, measured: what genuine models' defects are, against n, L and dtype.

For every registered genuine claim of Symplectic, VolumePreserving or LogDet (trained models: loaded from a reports
folder's checkpoints when their size matches, else trained through the cache) and for the wide benchmark maps of
models/wide_maps.py at n = 256 … 4096 (the matrix-free path), the numeric stage's own search (verify.checking.numeric.
measure: sampling at every scale ×1e-6 … ×1000, gradient ascent, hypothesis) runs over several seeds and records:

* the largest float32 defect within ×NEAR_DATA of the data (what the model's dtype is held to),
* the largest float32 defect anywhere (reported, not judged beyond ×NEAR_DATA: see verify/checking/domains.NEAR_DATA),
* the largest float64 defect anywhere (the oracle, judged at every scale), and whether the storage judgement excused it,

beside the tolerance in force (properties/base.py) and the ratios. The search maximises defect/tolerance with a
constant tolerance, so what it finds does not depend on the law being measured.

Run: `python -m benchmarks.error_model --out /tmp/error-model [--seeds 3] [--wide 256,1024,4096] [--only NAMES]`;
writes error_model.json and error_model.md there.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import torch

PROPERTIES = ("Symplectic", "VolumePreserving", "LogDet")
# (name, size): the registered genuine models with these claims (controls that make a genuine one of them too)
REGISTERED: tuple[tuple[str, str], ...] = (
    ("g-sympnet", "quick"), ("g-sympnet-hh", "quick"), ("la-sympnet", "quick"), ("henonnet", "quick"),
    ("hnn-verlet", "quick"), ("hnn-verlet-hh", "quick"), ("hnn-yoshida4", "quick"),
    ("g-sympnet-fput", "quick"), ("g-sympnet-fput", "full"),
    ("nice", "quick"), ("nice-volume", "quick"), ("realnvp", "quick"), ("zuko-nsf", "quick"),
    ("freia-nice", "quick"), ("memcnn-additive", "quick"), ("geotorch-so2", "quick"), ("strupnet-sympnet", "quick"),
    ("coupling-buggy-inverse", "quick"), ("sympnet-mismatched", "quick"), ("strupnet-volnet", "quick"),
    ("glow-conv-no-perm", "quick"), ("glow-digits", "quick"),
)


def _load(name: str, size: str, checkpoints: Path | None) -> Any:
    from verify.declare.registry import get
    from verify.train.training import load_checkpoint, train_cached

    arch = get(name)
    ck = None if checkpoints is None else checkpoints / name / "checkpoint"
    if ck is not None and (ck / "checkpoint.json").is_file():
        record = json.loads((ck / "checkpoint.json").read_text())
        if record.get("size") == size:
            return arch, load_checkpoint(ck, arch).model, f"checkpoint {ck}"
    return arch, train_cached(arch, size, seed=0).model, "trained (cache)"


def _row(model_name: str, prop: Any, ev: Any, n: int, L: int, seed: int, kind: str) -> dict[str, Any]:
    from verify.evidence import Measurement

    if not isinstance(ev, Measurement):
        return {"model": model_name, "property": prop.name, "n": n, "L": L, "seed": seed, "kind": kind,
                "error": getattr(ev, "summary", str(ev))[:300]}
    s = ev.search
    near = ev.tolerance / s["calibration_ratio"] if s["calibration_ratio"] not in (0, math.inf) else 0.0
    method = (s.get("plan") or {}).get("method", "full")
    return {"model": model_name, "property": prop.name, "n": n, "L": L, "seed": seed, "kind": kind, "method": method,
            "dtype": ev.dtype, "verdict": ev.verdict.value, "near32": near, "max32": ev.max_defect,
            "max64": ev.max_defect_float64, "storage_excused": bool(s.get("storage_excused")),
            "tol32": ev.tolerance, "tol64": ev.tolerance_float64, "formula": ev.tolerance_formula,
            "inputs": ev.n_inputs, "seconds": ev.seconds}


def registered(names: Sequence[tuple[str, str]], seeds: int, checkpoints: Path | None) -> list[dict[str, Any]]:
    from verify.checking.api import _depth
    from verify.checking.numeric import measure
    from verify.declare.registry import get_task
    from verify.declare.subject import Subject

    rows = []
    for name, size in names:
        try:
            arch, model, origin = _load(name, size, checkpoints)
        except Exception as exc:  # noqa: BLE001 - one model that cannot be had is reported, the others run
            rows.append({"model": f"{name}/{size}", "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        with arch.declared_defaults():
            task = get_task(arch.task_for(size)) if arch.task_for(size) else None
            dim = arch.size(size).config.get("dim") or getattr(task, "dim", None)
            L = _depth(model)
            subject = Subject(name=name, architecture=arch, size=size, model=model, task=task, dim=dim, depth=L)
            for claim in arch.claims:
                prop = claim.property
                if prop.name not in PROPERTIES or not claim.expected:
                    continue
                domain = prop.domain(subject)
                for seed in range(seeds):
                    t = time.perf_counter()
                    ev = measure(prop, model, dim=dim, depth=L, domain=domain, seed=seed)
                    rows.append(_row(f"{name}/{size}", prop, ev, dim, L, seed, "registered") | {"origin": origin})
                    print(json.dumps(rows[-1] | {"wall": time.perf_counter() - t}), flush=True)
    return rows


def wide(ns: Sequence[int], seeds: int, seconds: float) -> list[dict[str, Any]]:
    """The benchmark maps (untrained, seeded) on the matrix-free path: model seed = search seed."""
    from verify.checking import matrix_free as mf
    from verify.checking.api import _depth
    from verify.checking.domains import Box
    from verify.checking.numeric import measure
    from verify.models.wide_maps import CouplingFlow, sympnet
    from verify.properties import LogDet, Symplectic, VolumePreserving

    rows = []
    for n in ns:
        for seed in range(seeds):
            cases = (("sympnet", Symplectic(), lambda: sympnet(n, seed=seed), n),
                     ("additive-coupling", VolumePreserving(), lambda: CouplingFlow(n, seed=seed).eval(), n),
                     ("glow-like", LogDet(), lambda: CouplingFlow(6 * math.ceil(n / 6), affine=True, seed=seed).eval(), None))
            for label, prop, build, dim in cases:
                model = build()
                d = dim or model.n
                L = _depth(model)
                domain = Box([-1.0] * d, [1.0] * d)
                t = time.perf_counter()
                with mf.using(seconds=seconds):
                    ev = measure(prop, model, dim=d, depth=L, domain=domain, seed=seed)
                rows.append(_row(f"wide {label}", prop, ev, d, L, seed, "wide"))
                print(json.dumps(rows[-1] | {"wall": time.perf_counter() - t}), flush=True)
    return rows


def laws(prop: str, n: int, L: int, dtype: torch.dtype) -> tuple[float, float]:
    """(the tolerance in force, the previous law 4·(L+n)·eps) at this size, under the default matrix-free policy."""
    from verify.properties import LogDet, Symplectic, VolumePreserving
    from verify.properties.base import depth_dim_tolerance

    p = {"Symplectic": Symplectic(), "VolumePreserving": VolumePreserving(), "LogDet": LogDet()}[prop]
    return p.tolerance(dtype, n, L).value, depth_dim_tolerance(dtype, n, L).value


def table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (model, property, n, L): the largest defects over the seeds against the law in force and the old.

    margin32 = tolerance / largest float32 defect within ×2 the data (what float32 is held to); margin64 = float64
    tolerance / largest float64 defect at any scale (storage-excused inputs left out: the storage allowance covers
    them); ratio = tolerance / float32 defect near the data per seed (the calibration ratio), as a range."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if "error" not in r:
            groups.setdefault((r["model"], r["property"], r["n"], r["L"], r["dtype"]), []).append(r)
    out = []
    for (m, p, n, L, dt), rs in groups.items():
        dtype = getattr(torch, dt)
        new32, old32 = laws(p, n, L, dtype)
        new64, old64 = laws(p, n, L, torch.float64)
        near = [r["near32"] for r in rs]
        m64 = max((r["max64"] for r in rs if not r["storage_excused"]), default=0.0)
        inf = math.inf
        out.append({"model": m, "property": p, "n": n, "L": L, "dtype": dt, "method": rs[0]["method"],
                    "seeds": len(rs), "near32": max(near), "max32_any_scale": max(r["max32"] for r in rs),
                    "max64": m64, "tol32": new32, "tol64": new64, "old32": old32, "old64": old64,
                    "margin32": new32 / max(near) if max(near) else inf, "margin64": new64 / m64 if m64 else inf,
                    "ratio_new": (new32 / max(near) if max(near) else inf, new32 / min(near) if min(near) else inf),
                    "ratio_old": (old32 / max(near) if max(near) else inf, old32 / min(near) if min(near) else inf),
                    "excused64": sum(r["storage_excused"] for r in rs)})
    return out


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    t = table(rows)
    lines = ["# Round-off of the Jacobian properties, measured", "",
             "Largest defects over the seeds of the numeric stage's own search (sampling at every scale ×1e-6 … ×1000, "
             "gradient ascent, hypothesis). near32: the model's dtype within ×2 the data (what it is held to); "
             "max32 any scale: reported, not judged beyond ×2; max64: the float64 oracle at every scale (judged). "
             "tol: the law in force (properties/base.py, jacobian_tolerance); old: 4·(L+n)·eps. margin = tol / max; "
             "ratio = tol / near32 per seed (the calibration ratio the registry test bounds by 30), as min–max.",
             "", "| model | property | n | L | dtype | method | seeds | near32 | max32 any scale | max64 | tol32 | tol64 | "
             "margin32 | margin64 | new ratio | old ratio |", "|---" * 16 + "|"]
    for r in t:
        lines.append(f"| {r['model']} | {r['property']} | {r['n']} | {r['L']} | {r['dtype']} | {r['method']} | "
                     f"{r['seeds']} | {r['near32']:.3g} | {r['max32_any_scale']:.3g} | {r['max64']:.3g} | "
                     f"{r['tol32']:.3g} | {r['tol64']:.3g} | {r['margin32']:.3g} | {r['margin64']:.3g} | "
                     f"{r['ratio_new'][0]:.3g}–{r['ratio_new'][1]:.3g} | {r['ratio_old'][0]:.3g}–{r['ratio_old'][1]:.3g} |")
    if t:
        w32 = min(t, key=lambda r: r["margin32"])
        w64 = min(t, key=lambda r: r["margin64"])
        lines += ["", f"Worst margin, float32 near the data: {w32['margin32']:.3g} ({w32['model']} {w32['property']}); "
                      f"float64 at any scale: {w64['margin64']:.3g} ({w64['model']} {w64['property']})."]
    errs = [r for r in rows if "error" in r]
    if errs:
        lines += ["", "Errors:", ""] + [f"- {r['model']} {r.get('property', '')}: {r['error']}" for r in errs]
    return "\n".join(lines) + "\n"


def collect(logs: Sequence[str]) -> list[dict[str, Any]]:
    """The rows printed (one JSON object a line) by earlier runs, e.g. runs split over processes."""
    rows = []
    for log in logs:
        for line in Path(log).read_text().splitlines():
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/error-model")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--checkpoints", default="reports", help="a reports folder whose <name>/checkpoint are loaded "
                                                             "when their size matches (read only)")
    ap.add_argument("--only", default="", help="comma-separated name/size entries (default: all registered)")
    ap.add_argument("--wide", default="256,1024,4096", help="dimensions of the wide maps ('' for none)")
    ap.add_argument("--wide-seeds", type=int, default=2)
    ap.add_argument("--wide-seconds", type=float, default=10.0, help="Policy.seconds for the wide maps' search")
    ap.add_argument("--no-registered", action="store_true")
    ap.add_argument("--collect", default="", help="comma-separated logs of earlier runs: tabulate their rows only")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = REGISTERED if not args.only else tuple(tuple(s.split("/")) for s in args.only.split(","))  # type: ignore
    rows: list[dict[str, Any]] = collect(args.collect.split(",")) if args.collect else []
    if args.collect:
        pass
    elif not args.no_registered:
        rows += registered(names, args.seeds, Path(args.checkpoints) if args.checkpoints else None)
    if args.wide and not args.collect:
        rows += wide([int(v) for v in args.wide.split(",")], args.wide_seeds, args.wide_seconds)
    (out / "error_model.json").write_text(json.dumps(rows, indent=1))
    (out / "error_model.md").write_text(to_markdown(rows))
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
