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


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["# Round-off of the Jacobian properties, measured", "",
             "Max over seeds of the numeric stage's own search (all scales ×1e-6 … ×1000). near32: float32 within ×2 "
             "the data (judged); max32: float32 anywhere (judged only by the float64 oracle beyond ×2); max64: the "
             "float64 oracle anywhere. Margin = tolerance / max; ratio = tolerance / near32 (the calibration ratio).",
             "", "| model | property | n | L | method | seeds | near32 | max32 | max64 | tol32 | tol64 | margin32 | "
             "margin64 | ratio32 |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if "error" in r:
            continue
        groups.setdefault((r["model"], r["property"], r["n"], r["L"]), []).append(r)
    for (m, p, n, L), rs in groups.items():
        near = max(r["near32"] for r in rs)
        m32 = max(r["max32"] for r in rs)
        m64 = max((r["max64"] for r in rs if not r["storage_excused"]), default=0.0)
        t32, t64 = rs[0]["tol32"], rs[0]["tol64"]
        lines.append(f"| {m} | {p} | {n} | {L} | {rs[0]['method']} | {len(rs)} | {near:.3g} | {m32:.3g} | {m64:.3g} | "
                     f"{t32:.3g} | {t64:.3g} | {t32 / near if near else math.inf:.3g} | "
                     f"{t64 / m64 if m64 else math.inf:.3g} | {t32 / near if near else math.inf:.3g} |")
    errs = [r for r in rows if "error" in r]
    if errs:
        lines += ["", "Errors:", ""] + [f"- {r['model']} {r.get('property', '')}: {r['error']}" for r in errs]
    return "\n".join(lines) + "\n"


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
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = REGISTERED if not args.only else tuple(tuple(s.split("/")) for s in args.only.split(","))  # type: ignore
    rows: list[dict[str, Any]] = []
    if not args.no_registered:
        rows += registered(names, args.seeds, Path(args.checkpoints) if args.checkpoints else None)
    if args.wide:
        rows += wide([int(v) for v in args.wide.split(",")], args.wide_seeds, args.wide_seconds)
    (out / "error_model.json").write_text(json.dumps(rows, indent=1))
    (out / "error_model.md").write_text(to_markdown(rows))
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
