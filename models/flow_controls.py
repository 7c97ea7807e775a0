"""Negative controls for flows: each claims LogDet or Invertible falsely, with the bug that real flow libraries shipped.

Each is trained on a generated density like the genuine flows, so that a refutation is about structure, not about an
untrained network. Their twins describe the code as written (bug included), as a twin generated from the code would:
the symbolic stage refutes the bug exactly, the numeric stage with the input and the value that give it away.
"""
from __future__ import annotations

import torch
from torch import nn

from verify.declare.registry import Size, architecture
from verify.models.flows import LOG_DET, AffineCoupling, Flow, FlowLayer, Glow, RealNVP, _halves
from verify.properties import Invertible, LogDet


def _quick(config: dict, steps: int = 200, n_train: int = 1024) -> dict[str, Size]:
    return {"quick": Size(config=config, steps=steps, lr=5e-3, n_train=n_train),
            "full": Size(config=config, steps=5 * steps, lr=5e-3, n_train=4 * n_train)}


architecture(
    "realnvp-logdet-sign", task="two-moons",
    claims=[Invertible(), LOG_DET.falsely("log_det reports −Σ s: the sign flipped in the forward only")],
    description="Negative control: RealNVP whose forward log-det has its sign flipped (the round trip is intact)",
    # trained on its own (wrong) likelihood, which rewards contraction (it adds +Σ s where −Σ s belongs): a short, gentle
    # run keeps the flow well conditioned, so that the round trip is judged on a sane map and only the report is wrong
    sizes={"quick": Size(config={"dim": 2, "layers": 4, "width": 16, "log_det_sign": -1}, steps=30, lr=1e-3, n_train=1024),
           "full": Size(config={"dim": 2, "layers": 4, "width": 16, "log_det_sign": -1}, steps=100, lr=1e-3, n_train=4096)},
)(RealNVP)

architecture(
    "realnvp-inverse-logdet-sign", task="two-moons",
    claims=[Invertible(), LOG_DET.falsely("inverse_log_det reports +Σ s: the sign flipped in the inverse only")],
    description="Negative control: RealNVP whose inverse log-det has its sign flipped (forward and round trip intact)",
    sizes=_quick({"dim": 2, "layers": 4, "width": 16, "inverse_log_det_sign": -1}),
)(RealNVP)

architecture(
    "coupling-overlap", task="eight-gaussians",
    claims=[Invertible().falsely("the conditioner also reads the moved coordinate, so the declared inverse (which "
                                 "recomputes s, t from the output) is not f⁻¹"),
            LogDet().falsely("with the masks overlapping, J is not triangular: Σ s misses x_b·∂s/∂x_b")],
    description="Negative control: affine couplings whose masks overlap (the transformed half also conditions s, t)",
    sizes=_quick({"dim": 2, "layers": 4, "width": 16, "overlap": 1}),
)(RealNVP)


class GlowNoPermutationInverse(Glow):
    """Glow whose 1×1 convolutions invert without the LU permutation (W⁻¹ = U⁻¹L⁻¹ instead of U⁻¹L⁻¹Pᵀ). A random
    permutation may be the identity, where forgetting it is harmless: the control makes each a cyclic shift, so the bug
    is there for every seed."""

    def __init__(self, **config: object) -> None:
        super().__init__(ignore_permutation=True, **config)
        for layer in self.layers:
            if hasattr(layer, "perm"):
                layer.perm.copy_(torch.roll(torch.arange(layer.C), 1))





class BatchNormTrain(FlowLayer):
    """RealNVP's batch normalisation with the train-mode path left on: y = (x − μ_B)/√(σ²_B + ε)·exp(g) + β with the
    batch's own statistics in every mode, reporting log|det| = Σ (g − ½ log(σ²_B + ε)) as if μ_B, σ²_B were constants."""

    eps = 1e-4

    def __init__(self, n: int) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.zeros(n))
        self.beta = nn.Parameter(torch.zeros(n))

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, var = x.mean(0), x.var(0, unbiased=False)
        y = (x - mu) / torch.sqrt(var + self.eps) * torch.exp(self.g) + self.beta
        return y, (self.g - 0.5 * torch.log(var + self.eps)).sum().expand(x.shape[0])

    def inverse_transform(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("not claimed: the batch statistics of the forward are not available to invert")


class BatchNormFlow(Flow):
    """Affine couplings with a train-mode BatchNorm between them."""

    def __init__(self, dim: int = 2, layers: int = 2, width: int = 16) -> None:
        blocks: list[FlowLayer] = []
        for i in range(layers):
            blocks += [AffineCoupling(dim, *_halves(dim, i), width), BatchNormTrain(dim)]
        super().__init__(blocks)


architecture(
    "flow-batchnorm-train", task="two-moons",
    claims=[LogDet().falsely("a BatchNorm left in train mode: f(x) depends on the other inputs of the batch, and its "
                             "reported log-det treats the batch statistics as constants")],
    description="Negative control: a coupling flow with a BatchNorm that always uses batch statistics",
    sizes=_quick({"dim": 2, "layers": 2, "width": 16}),
)(BatchNormFlow)
