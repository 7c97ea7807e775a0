"""Glow on 8×8 digits (d = 64) and its two controls: registered only when asked for.

    verify --plugin verify.models.flows_glow report glow-digits glow-conv-no-perm glow-actnorm-no-hw
    VERIFY_PLUGINS=verify.models.flows_glow pytest tests/test_flows.py

Why not in the default run: at d = 64 each Glow architecture took 95–340 s to check on this 2-core CPU (its binding
stage runs per claim with 64 autograd passes per layer, and the numeric stage builds full Jacobians at the threshold
of the matrix-free path), which does not fit `make test` (< 15 min) or `make reports` (< 10 min) beside ~60 other
architectures. Their committed reports (reports/glow-*) were written at the quick size with this module as a plugin.
Making them cheap enough for the default run (one binding per architecture, a size budget) is the next step.
"""
from __future__ import annotations

from verify.declare.registry import architecture
from verify.models.flow_controls import GlowNoPermutationInverse, _quick
from verify.models.flows import LOG_DET, Glow, _sizes
from verify.properties import Invertible

architecture(
    "glow-digits", task="digits-density", claims=[Invertible(), LOG_DET],
    description="Glow on 8×8 digits (d = 64): squeeze, actnorm, LU 1×1 convolution, affine coupling, multi-scale split",
    reference="Kingma, Dhariwal 2018, arXiv:1807.03039",
    sizes=_sizes({"steps": 1, "hidden": 16}, {"steps": 4, "hidden": 32}, steps=(150, 1500), n_train=(1024, 4096)),
)(Glow)

architecture(
    "glow-conv-no-perm", task="digits-density",
    claims=[Invertible().falsely("the 1×1 convolutions' inverse ignores the LU permutation P"), LOG_DET],
    description="Negative control: Glow on digits whose 1×1 convolution inverse forgets Pᵀ (|det| unchanged)",
    sizes=_quick({"steps": 1, "hidden": 8}, steps=60),
)(GlowNoPermutationInverse)

architecture(
    "glow-actnorm-no-hw", task="digits-density",
    claims=[Invertible(), LOG_DET.falsely("actnorm reports Σ logs instead of H·W·Σ logs")],
    description="Negative control: Glow on digits whose actnorm log-det forgets the factor H·W",
    sizes=_quick({"steps": 1, "hidden": 8, "forget_pixels": True}, steps=60),
)(Glow)
