"""zuko (https://github.com/probabilists/zuko): a neural spline flow, wrapped as a user would wrap it for the verifier.

zuko builds a flow's transform lazily (``flow.transform()`` returns a ``ComposedTransform`` of autoregressive
rational-quadratic spline transforms); the transform maps data x to the base noise z and reports log|det J| as its
``ladj`` (``call_and_ladj``). The wrapper exposes exactly that: forward(x) = the transform, inverse(z) = its ``inv``,
log_det(x) = its ladj, shape (B,).

Inverse accuracy: NSF's inverse is exact up to round-off, not iterative to a tolerance. Each autoregressive layer is
inverted by ``features`` sequential passes of its MADE conditioner (zuko's ``AutoregressiveTransform.inv``; 2 passes
in 2-D, and after d passes every coordinate's conditioner sees only already-inverted coordinates, so the result is the
exact inverse), and the monotonic rational-quadratic spline is inverted in closed form (the root of a quadratic); outside
the spline's bound (|u| > 5) the transform is the identity. Measured (full size, the committed report): the normalised
round-trip defect is ≤ 1.07e-6 (1.5·L·eps) near the data in float32 and 2.3e-15 in float64 everywhere searched; far out
(×1000 the data box) float32 reaches 0.09, which the float64 copy does not reproduce (round-off of float32 there).

The task is this package's own, as a user's would be: two moons generated with numpy, trained by maximum likelihood.
The verifier's trainer calls ``task.loss(model(x), y)``, so the negative log-likelihood needs the log-determinant of
that same forward: the forward attaches it to its output tensor as the attribute ``ladj`` (the output's values are the
transform alone, in every mode; the attribute is ignored by everything but this loss, and in training and eval mode
alike, since the trainer also scores the held-out data in eval mode).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from verify import Size, architecture
from verify.declare.registry import register_task
from verify.properties import Invertible, LogDet
from verify_clients import available

REFERENCE = ("zuko.flows.NSF (Durkan et al. 2019, neural spline flows; zuko by F. Rozet et al.): monotonic "
             "rational-quadratic spline autoregressive transforms")


@dataclass(frozen=True)
class TwoMoonsTask:
    """Two interleaved half circles of radius 1 (centres (0, 0) and (1, 0.5)) plus N(0, σ²) noise, σ = 0.1, from numpy.

    A density task: the targets are the inputs (the loss is the flow's negative log-likelihood, not a regression). The
    data box [−1.5, 2.5] × [−1.0, 1.5] holds every point within 4σ of the moons."""

    loss_name: ClassVar[str] = "negative log-likelihood, nats per input"  # what reports call its `loss`
    name: str = "zuko-two-moons"  # not "two-moons": the project's own density tasks may use that name
    noise: float = 0.1
    dim: int = 2
    low: tuple[float, float] = (-1.5, -1.0)
    high: tuple[float, float] = (2.5, 1.5)
    description: str = ("two moons (radius 1, centres (0, 0) and (1, 0.5), N(0, 0.1²) noise), numpy; maximum likelihood "
                        "(the flow's negative log-likelihood under a standard normal base)")

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(seed)
        t = rng.uniform(0.0, math.pi, n)
        upper = rng.random(n) < 0.5
        x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
        y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
        pts = np.stack([x, y], axis=-1) + self.noise * rng.standard_normal((n, 2))
        data = torch.from_numpy(pts)
        return data, data.clone()

    @property
    def learned_below(self) -> float:
        """The identity map's negative log-likelihood on held-out data: a flow that has learned anything beats it."""
        x, _ = self.dataset(1024, 10_000)
        return float(0.5 * (x**2).sum(-1).mean() + 0.5 * self.dim * math.log(2 * math.pi))

    @staticmethod
    def loss(z: torch.Tensor, _target: torch.Tensor) -> torch.Tensor:
        """−mean log p(x) = −mean [log N(z; 0, I) + log|det J_f(x)|], the ladj read from the forward's output."""
        ladj = getattr(z, "ladj", None)
        if ladj is None:
            raise ValueError("z.ladj=None: expected the flow's forward to attach its log|det J| to its output "
                             "(ZukoFlow.forward does); fix: train a ZukoFlow, or give the task another loss")
        log_base = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        return -(log_base + ladj).mean()


TWO_MOONS = register_task(TwoMoonsTask())
SIZES = {"quick": Size(config={"transforms": 2, "hidden": 16, "bins": 8}, steps=200, lr=1e-2, n_train=1024, batch=128),
         "full": Size(config={"transforms": 3, "hidden": 64, "bins": 8}, steps=1500, lr=2e-3, n_train=8192, batch=512)}


class ZukoFlow(nn.Module):
    """A zuko NSF on R² as a map: forward(x) = z (the transform), inverse(z) = x, log_det(x) = zuko's ladj."""

    def __init__(self, transforms: int = 2, hidden: int = 32, bins: int = 8) -> None:
        super().__init__()
        import zuko

        self.flow = zuko.flows.NSF(features=2, context=0, transforms=transforms, hidden_features=[hidden, hidden],
                                   bins=bins)
        # what the verifier's round-off model counts as layers (not every nn.Linear): each spline transform rounds once
        # forward, and its inverse runs `features` (= 2) sequential passes, each a full spline evaluation and inversion,
        # so a round trip rounds transforms × 2 times (with depth = transforms the quick flow's genuine round trip, 6e-7
        # = 5 eps in float32, sat at 1.7× the tolerance 1.5·L·eps; the float64 copy agrees to 1e-15)
        self.depth = 2 * transforms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, ladj = self.flow.transform().call_and_ladj(x)
        try:  # for the task's maximum-likelihood loss only (see the module docstring)
            z.ladj = ladj
        except (AttributeError, RuntimeError):  # a wrapped tensor (torch.func) that takes no attributes: nothing needs it
            pass
        return z

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return self.flow.transform().inv(z)

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        """log|det J_f(x)| as zuko reports it, shape (B,)."""
        return self.flow.transform().call_and_ladj(x)[1]


if available("zuko"):
    architecture("zuko-nsf", task=TWO_MOONS.name, sizes=SIZES, reference=REFERENCE,
                 claims=[Invertible(), LogDet()])(ZukoFlow)

    class ZukoFlowNegatedLogDet(ZukoFlow):
        """The same zuko NSF, whose wrapper reports −ladj: the sign bug a round trip cannot see (negative control)."""

        def log_det(self, x: torch.Tensor) -> torch.Tensor:
            return -super().log_det(x)

    architecture("zuko-nsf-negated-logdet", task=TWO_MOONS.name, sizes=SIZES, reference=REFERENCE,
                 claims=[Invertible(),
                         LogDet().falsely("the wrapper reports −ladj: log|det J| with the sign flipped; the transform "
                                          "and its inverse are zuko's own, so the round trips still hold")],
                 description="Negative control: the zuko NSF with its reported log-determinant negated")(ZukoFlowNegatedLogDet)
