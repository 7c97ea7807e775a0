"""Optimisers as maps of (θ, v): the figures of ConformalSymplectic (run: `python -m benchmarks.optimizers`).

1. Symbolic: the heavy-ball step (torch.optim.SGD(momentum)) proved conformally symplectic and Nesterov's refuted, with
   the loss an abstract C² function, per size P (the proof is exact at each P; it is not a lemma over P).
2. One optimiser step checked on a network with P ≥ 10⁴ parameters (the 1 → h → 1 sine network of
   models/optimizer_steps.py, h = 3400: P = 10201, phase space 2P = 20402), matrix-free: ‖JᵀΩJ − μΩ‖₂ by Lanczos on
   Jacobian–vector products at states (θ, v) of the task's box, float32 with its float64 oracle: the time of
   `check(..., symbolic=False)` with a budget of `--inputs` states, and of one defect evaluation per state.
3. Full Jacobian against matrix-free, per state, where the full one still fits (h = 300: 2P = 1802), same process,
   same states (float64).

Times are wall-clock with one intra-op thread. Writes OUT/optimizers.json and .md.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch


def symbolic_rows(hiddens: tuple[int, ...] = (1, 2, 3)) -> list[dict[str, Any]]:
    from verify.derive.proofs import derive
    from verify.models.optimizer_steps import momentum_blocks, n_params
    from verify.properties import ConformalSymplectic

    rows = []
    for h in hiddens:
        for nesterov in (False, True):
            t = time.perf_counter()
            ev = derive(ConformalSymplectic.with_factor(0.9), momentum_blocks({"hidden": h, "nesterov": nesterov}), 120)
            rows.append({"P": n_params(h), "step": "Nesterov" if nesterov else "heavy ball", "verdict": ev.verdict.value,
                         "seconds": time.perf_counter() - t})
    return rows


def one_step_rows(hidden: int, inputs: int) -> dict[str, Any]:
    from verify import check
    from verify.checking.search import Budget
    from verify.models.optimizer_steps import MomentumStep
    from verify.properties import ConformalSymplectic
    from verify.properties.base import Probe

    torch.manual_seed(0)
    model = MomentumStep(hidden=hidden)
    claim = ConformalSymplectic.with_factor(float(model.mu))
    budget = Budget(n_inputs=inputs, starts=0, steps=0, population=1, examples=0, chunk=inputs)
    t = time.perf_counter()
    res = check(model, claims=[claim], dim=model.dim, symbolic=False, budget=budget)
    whole = time.perf_counter() - t
    r = res.results[0]
    x = torch.rand(1, model.dim, generator=torch.Generator().manual_seed(1)) * 2 - 1
    claim.defects(Probe(model, x))  # warm-up
    t = time.perf_counter()
    claim.defects(Probe(model, x))
    per = time.perf_counter() - t
    return {"P": model.P, "dim": model.dim, "inputs": getattr(r.numeric, "n_inputs", 0), "verdict": r.verdict.value,
            "check_seconds": whole, "one_defect_seconds_float32": per, "summary": r.numeric.summary[:400]}


def ratio_row(hidden: int) -> dict[str, Any]:
    from verify.checking import matrix_free as mf
    from verify.models.optimizer_steps import MomentumStep
    from verify.properties import ConformalSymplectic
    from verify.properties.base import Probe

    model = MomentumStep(hidden=hidden).double()
    claim = ConformalSymplectic.with_factor(float(model.mu))
    x = torch.rand(2, model.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out: dict[str, Any] = {"P": model.P, "dim": model.dim}
    for method in ("full", "matrix-free"):
        with mf.using(method=method):
            claim.defects(Probe(model, x[:1]))
            t = time.perf_counter()
            d = claim.defects(Probe(model, x))
            out[f"{method}_seconds_per_input"] = (time.perf_counter() - t) / x.shape[0]
            out[f"{method}_max_defect"] = float(d.max())
    out["ratio"] = out["full_seconds_per_input"] / out["matrix-free_seconds_per_input"]
    return out


def to_markdown(r: dict[str, Any]) -> list[str]:
    lines = ["## Optimisers as maps: ConformalSymplectic", "",
             f"Command: `python -m benchmarks.optimizers`. Machine: {r['machine']}.", "",
             "| P | step | symbolic verdict | seconds |", "|---|---|---|---|"]
    lines += [f"| {row['P']} | {row['step']} | {row['verdict']} | {row['seconds']:.3f} |" for row in r["symbolic"]]
    big = r["one_step"]
    lines += ["", f"One heavy-ball step on a network with P = {big['P']} parameters (2P = {big['dim']}), float32, "
              f"matrix-free: `check` over {big['inputs']} states {big['check_seconds']:.1f} s ({big['verdict']}); one "
              f"defect evaluation {big['one_defect_seconds_float32']:.2f} s per state.", ""]
    rt = r["ratio"]
    lines += [f"Full Jacobian against matrix-free at P = {rt['P']} (2P = {rt['dim']}, float64, per state): full "
              f"{rt['full_seconds_per_input']:.3f} s, matrix-free {rt['matrix-free_seconds_per_input']:.3f} s, ratio "
              f"{rt['ratio']:.1f}× (max defects {rt['full_max_defect']:.3g} and {rt['matrix-free_max_defect']:.3g}).", ""]
    return lines


def section(out: Path) -> str:
    """The saved section for reports/benchmarks.md (empty when the benchmark has not been run into `out`)."""
    path = out / "optimizers.json"
    return "\n".join(to_markdown(json.loads(path.read_text()))) if path.is_file() else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports")
    p.add_argument("--hidden", type=int, default=3400, help="sine-network width of the large case (P = 3h + 1)")
    p.add_argument("--ratio-hidden", type=int, default=300)
    p.add_argument("--inputs", type=int, default=4)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    r = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "cpu_threads": 1},
         "symbolic": symbolic_rows(), "one_step": one_step_rows(args.hidden, args.inputs),
         "ratio": ratio_row(args.ratio_hidden)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "optimizers.json").write_text(json.dumps(r, indent=1))
    (out / "optimizers.md").write_text("\n".join(to_markdown(r)) + "\n")
    print("\n".join(to_markdown(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
