"""Optimisers as maps of (θ, v): the figures of ConformalSymplectic (run: `python -m benchmarks.optimizers`).

1. Symbolic: the heavy-ball step (torch.optim.SGD(momentum)) proved conformally symplectic and Nesterov's refuted, with
   the loss an abstract C² function, per size P (the proof is exact at each P; it is not a lemma over P).
2. One optimiser step checked on a network with P ≥ 10⁴ parameters (the 1 → h → 1 sine network of
   models/optimizer_steps.py, h = 3400: P = 10201, phase space 2P = 20402), matrix-free: ‖JᵀΩJ − μΩ‖₂ by Lanczos on
   Jacobian–vector products at states (θ, v) of the task's box, float32 with its float64 oracle: the time of
   `check(..., symbolic=False)` with a budget of `--inputs` states, and of one defect evaluation per state.
3. Full Jacobian against matrix-free, per state, where the full one still fits (h = 300: 2P = 1802), same process,
   same states (float64).
4. The variants of models/optimizer_variants.py (P = 13): each step type's symbolic verdict and its factor c = (JᵀΩJ)_(0,d)
   (heavy ball, coupled and decoupled weight decay, Adam with a frozen and with its real preconditioner), and the numeric
   verdicts of the cosine-scheduled window, SGDW and Adam (float64, 256 sampled inputs) for their true factor and the false claim.

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
    # no data-scale resolution stage: in 2P = 20402 dimensions its cost cap (2¹⁹ coordinates) buys 16 more samples, and no
    # number of samples this side of 10¹⁰⁰⁰ would guarantee a ball of any radius below the box's half-width; the
    # evidence says so (resolution_cap = 0), as the registered 26-dimensional optimiser windows do
    budget = Budget(n_inputs=inputs, starts=0, steps=0, population=1, examples=0, chunk=inputs, resolution_cap=0)
    import verify.models  # noqa: F401  (the registry's one-off import, ~3 s, is not the check's cost)

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


def variant_rows(inputs: int = 256) -> dict[str, Any]:
    import math

    import sympy as sp

    from verify import check
    from verify.checking.search import Budget
    from verify.derive.proofs import derive, trace_exact
    from verify.models import optimizer_variants as ov
    from verify.models.optimizer_steps import momentum_blocks
    from verify.properties import ConformalSymplectic
    from verify.properties.conformal_symplectic import _raw_form

    symbolic = []
    for label, blocks in (("heavy ball (any lr: a schedule's step)", momentum_blocks), ("coupled weight decay",
                          ov.coupled_decay_blocks), ("SGDW (decoupled decay)", ov.decoupled_decay_blocks),
                          ("Adam, frozen preconditioner", ov.frozen_adam_blocks), ("Adam", ov.adam_blocks)):
        (block,) = blocks({"hidden": ov.HIDDEN})
        t = time.perf_counter()
        ev = derive(ConformalSymplectic.with_factor(0.9), [block], 120)
        seconds = time.perf_counter() - t
        tr = trace_exact(block)
        c = tr.reduce(_raw_form(tr.jacobian, tr.backend.zero)[(0, len(tr.jacobian) // 2)])
        c = sp.sympify(tr.to_expr(c) if hasattr(c, "t") or hasattr(c, "monoms") else c)
        shown = str(sp.factor(c)) if len(str(c)) < 60 else "depends on x (∂p, ∇²f, ∇f)"
        symbolic.append({"step": label, "verdict": ev.verdict.value, "c": shown, "seconds": seconds})
    numeric = []
    torch.manual_seed(0)
    window, sgdw, adam = ov.ScheduledMomentumSteps().double(), ov.DecoupledDecayStep().double(), ov.AdamStep().double()
    mu = float(window.layers[0].mu)
    cases = (("cosine window (4 steps)", window, ConformalSymplectic.with_factor(mu ** len(window.lrs)), "μ^K"),
             ("cosine window (4 steps)", window, ConformalSymplectic(rate=-math.log(mu) / window.lrs[0],
                                                                       step=sum(window.lrs)), "constant γ from h_0"),
             ("SGDW", sgdw, ConformalSymplectic.with_factor(float(sgdw.mu * (1 - sgdw.lr * sgdw.wd))), "μ(1 − lr·λ)"),
             ("SGDW", sgdw, ConformalSymplectic.with_factor(float(sgdw.mu)), "μ"),
             ("Adam", adam, ConformalSymplectic.with_factor(float(adam.b1)), "β₁"))
    for label, model, claim, what in cases:
        t = time.perf_counter()
        # the data-scale resolution stage is left out (in 26 dimensions its cap reaches no ball inside the box)
        budget = Budget(n_inputs=inputs, examples=5, resolution_cap=0)
        r = check(model, claims=[claim], dim=model.dim, budget=budget, seed=0, symbolic=False).results[0]
        numeric.append({"optimiser": label, "claim": what, "factor": claim.factor, "verdict": r.verdict.value,
                        "max_defect_float64": getattr(r.numeric, "max_defect_float64", float("nan")),
                        "seconds": time.perf_counter() - t})
    return {"symbolic": symbolic, "numeric": numeric, "inputs": inputs}


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
    v = r.get("variants")
    if v:
        lines += ["Schedules, weight decay and Adam (models/optimizer_variants.py, P = 13): each step's factor "
                  "c = (JᵀΩJ)_(0,d), proved for any loss, or refuted", "", "| step | symbolic verdict | c | seconds |",
                  "|---|---|---|---|"]
        lines += [f"| {row['step']} | {row['verdict']} | {row['c']} | {row['seconds']:.3f} |" for row in v["symbolic"]]
        lines += ["", f"Numeric, float64, {v['inputs']} sampled inputs per check (plus ascent and hypothesis):", "",
                  "| optimiser | claimed factor | verdict | float64 max defect | seconds |", "|---|---|---|---|---|"]
        lines += [f"| {row['optimiser']} | {row['claim']} = {row['factor']:.6g} | {row['verdict']} | "
                  f"{row['max_defect_float64']:.3g} | {row['seconds']:.1f} |" for row in v["numeric"]]
        lines += [""]
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
         "ratio": ratio_row(args.ratio_hidden), "variants": variant_rows()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "optimizers.json").write_text(json.dumps(r, indent=1))
    (out / "optimizers.md").write_text("\n".join(to_markdown(r)) + "\n")
    print("\n".join(to_markdown(r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
