"""Glow on 8×8 digits (d = 64) and its two controls, in the default registry.

They were opt-in while each took 95–340 s to check; with the binding searched once per module (shared by Invertible
and LogDet) and GLOW_BUDGET, the quick size checks in ~9 s per architecture and the full size of glow-digits in ~120 s
on this 2-core CPU (load < 2), which both commands afford. Glow at d = 3072 (models/flows_large.py) stays opt-in.
"""
from __future__ import annotations

import dataclasses

from verify.checking.search import Budget
from verify.declare.registry import Size, architecture
from verify.models.flow_controls import GlowNoPermutationInverse, _quick
from verify.models.flows import LOG_DET, Glow, _sizes
from verify.properties import Invertible

# The search of every Glow size (numeric and binding stages; the binding halves it): at d = 64 each input costs the
# numeric stage two full 64×64 Jacobians (model and float64 copy) and the binding eight per-step Jacobians per side,
# so the engine's default (8192 samples + 8192 for the data-scale resolution, 32 × 16 ascent, 60 hypothesis examples)
# took 50–400 s per claim. This budget is stated in the evidence (options.budget, budget_declared_by_size). What it
# gives up: density at the data scale (no resolution stage: ρ = 0.1 in 64 dimensions needs ~10⁴⁰ samples anyway); what
# it keeps: every scale sampled, gradient and smoothed ascent, hypothesis. The controls' bugs are structural (a
# forgotten permutation, a forgotten factor H·W), present at every input: refuted by the first samples.
GLOW_BUDGET = Budget(n_inputs=512, starts=8, steps=6, population=2, examples=8, chunk=256, resolution=0.0)


def _budgeted(sizes: dict[str, Size]) -> dict[str, Size]:
    return {name: dataclasses.replace(size, budget=GLOW_BUDGET) for name, size in sizes.items()}

architecture(
    "glow-digits", task="digits-density", claims=[Invertible(), LOG_DET],
    description="Glow on 8×8 digits (d = 64): squeeze, actnorm, LU 1×1 convolution, affine coupling, multi-scale split",
    reference="Kingma, Dhariwal 2018, arXiv:1807.03039",
    sizes=_budgeted(_sizes({"steps": 1, "hidden": 16}, {"steps": 4, "hidden": 32}, steps=(150, 1500), n_train=(1024, 4096))),
)(Glow)

architecture(
    "glow-conv-no-perm", task="digits-density",
    claims=[Invertible().falsely("the 1×1 convolutions' inverse ignores the LU permutation P"), LOG_DET],
    description="Negative control: Glow on digits whose 1×1 convolution inverse forgets Pᵀ (|det| unchanged)",
    sizes=_budgeted(_quick({"steps": 1, "hidden": 8}, steps=60)),
)(GlowNoPermutationInverse)

architecture(
    "glow-actnorm-no-hw", task="digits-density",
    claims=[Invertible(), LOG_DET.falsely("actnorm reports Σ logs instead of H·W·Σ logs")],
    description="Negative control: Glow on digits whose actnorm log-det forgets the factor H·W",
    sizes=_budgeted(_quick({"steps": 1, "hidden": 8, "forget_pixels": True}, steps=60)),
)(Glow)
