"""e3nn networks as a user would declare them: fully connected networks inside DeepSets (permutation invariance of a
set of 5 points, the project's S5 claim), and tensor-product networks on clouds of 5 points with a scalar and a vector
each (O(3) equivariance of the output vectors, on a task registered here), with two negative controls."""
from __future__ import annotations

import torch
from torch import nn

from dataclasses import dataclass

from verify import Size, architecture
from verify.declare.registry import register_task
from verify.declare.space import FeatureAction, O3, irreps
from verify.declare.actions import SetAction
from verify.declare.groups import SymmetricGroup
from verify.properties.equivariant import Equivariant
from verify_clients import available

N_ITEMS = 5  # the set-sum task's set size
S5 = SymmetricGroup(N_ITEMS)
SIZES = {"quick": Size(config={"width": 32}, steps=600, lr=2e-2, n_train=1024, batch=128),
         "full": Size(config={"width": 64}, steps=3000, lr=3e-3, n_train=4096, batch=256)}

if available("e3nn"):
    from e3nn.nn import FullyConnectedNet

    class E3nnDeepSets(nn.Module):
        """ρ(Σ_i φ(x_i)) with φ, ρ e3nn FullyConnectedNets; `index_term` scales item i's features by a learned vector.

        e3nn's FullyConnectedNet has no biases, so with an odd activation (tanh) the whole network is an odd function
        and cannot fit the task's even part (|x|²): SiLU instead."""

        def __init__(self, width: int = 32, index_term: bool = False) -> None:
            super().__init__()
            act = torch.nn.functional.silu
            self.phi = FullyConnectedNet([2, width, width], act)
            self.rho = FullyConnectedNet([width, width, 1], act)
            self.index = nn.Parameter(0.5 * torch.randn(N_ITEMS, width)) if index_term else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.phi(x)
            if self.index is not None:
                h = h * (1 + self.index)
            return self.rho(h.sum(1))

    architecture("e3nn-deepsets", task="set-sum", sizes=SIZES, reference="e3nn.nn.FullyConnectedNet in DeepSets",
                 claims=[Equivariant(S5, SetAction(S5), SetAction(S5, invariant=True))],
                 description="DeepSets of e3nn FullyConnectedNets: permutation invariant")(E3nnDeepSets)
    architecture("e3nn-deepsets-index", task="set-sum",
                 sizes={k: Size(config={**v.config, "index_term": True}, steps=v.steps, lr=v.lr, n_train=v.n_train,
                                batch=v.batch) for k, v in SIZES.items()},
                 reference="e3nn.nn.FullyConnectedNet in DeepSets, plus an index-dependent scale",
                 claims=[Equivariant(S5, SetAction(S5), SetAction(S5, invariant=True)).falsely(
                     "each item's features are scaled by a learned vector per item index: reordering the set "
                     "changes the output")],
                 description="Negative control: DeepSets of e3nn networks with a per-index scale")(E3nnDeepSets)


# ------------------------------------------------------------------------------ O(3): vectors on a cloud of points
N_POINTS = 5


@dataclass(frozen=True)
class VectorCloudTask:
    """Clouds of 5 points, each a scalar s (0e) and a vector v (1o): inputs (B, 5, 4) laid out as e3nn's
    "1x0e + 1x1o"; targets (B, 5, 3) = (s_i + |v_i|²)·v_i + mean_j v_j, a 1o vector per point. O(3)-equivariant
    (and permutation-equivariant over the points)."""

    name: str = "vector-cloud"
    description: str = ("clouds of 5 points (scalar s, vector v), target (s + |v|²)·v + mean over points of v per point "
                        "(O(3)- and permutation-equivariant)")
    learned_below: float = 0.5  # MSE; the target's variance is ≈ 2.26 (the quick size reaches a test MSE ≈ 0.42)

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        s = torch.randn(n, N_POINTS, 1, generator=g, dtype=torch.float64)
        v = 0.6 * torch.randn(n, N_POINTS, 3, generator=g, dtype=torch.float64)
        y = (s + (v * v).sum(-1, keepdim=True)) * v + v.mean(1, keepdim=True)
        return torch.cat([s, v], dim=-1), y


VECTOR_CLOUD = register_task(VectorCloudTask())
CLOUD_SIZES = {"quick": Size(config={"mul": 8}, steps=300, lr=1e-2, n_train=1024, batch=128),
               "full": Size(config={"mul": 16}, steps=2000, lr=3e-3, n_train=4096, batch=256)}


def o3_claim() -> Equivariant:
    G = O3()
    return Equivariant(G, FeatureAction(irreps(G, "1x0e + 1x1o"), points=N_POINTS),
                       FeatureAction(irreps(G, "1x1o"), points=N_POINTS))


if available("e3nn"):
    from e3nn import o3
    from e3nn.nn import Gate

    class E3nnVectorCloud(nn.Module):
        """Per point z_i = [x_i, mean_j x_j] ("2x0e + 2x1o"); a fully connected tensor product z ⊗ z → scalars, gates
        and vectors, e3nn's Gate (SiLU scalars, sigmoid gates on the vectors), a second tensor product with z, plus a
        linear path: a 1o vector per point. Controls: `vector_bias` adds a learned 3-vector to every output vector;
        `leaky_gate` adds the point's x-component v_x (times a learned weight) to the gating scalars."""

        def __init__(self, mul: int = 8, vector_bias: bool = False, leaky_gate: bool = False) -> None:
            super().__init__()
            z = o3.Irreps("2x0e + 2x1o")
            self.tp1 = o3.FullyConnectedTensorProduct(z, z, o3.Irreps(f"{2 * mul}x0e + {mul}x1o"))
            self.gate = Gate(f"{mul}x0e", [torch.nn.functional.silu], f"{mul}x0e", [torch.sigmoid], f"{mul}x1o")
            self.tp2 = o3.FullyConnectedTensorProduct(self.gate.irreps_out, z, o3.Irreps("1x1o"))
            self.lin = o3.Linear(z, o3.Irreps("1x1o"))
            self.mul = mul
            self.bias = nn.Parameter(0.3 * torch.randn(3)) if vector_bias else None
            self.leak = nn.Parameter(torch.ones(mul)) if leaky_gate else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(1, keepdim=True).expand_as(x)
            z = torch.cat([x[..., :1], m[..., :1], x[..., 1:], m[..., 1:]], dim=-1)  # "2x0e + 2x1o"
            h = self.tp1(z, z)
            if self.leak is not None:  # the gates (scalars mul .. 2·mul) read the x-component of v: not equivariant
                mul = self.mul
                h = torch.cat([h[..., :mul], h[..., mul:2 * mul] + self.leak * x[..., 1:2], h[..., 2 * mul:]], dim=-1)
            h = self.gate(h)
            out = self.tp2(h, z) + self.lin(z)
            if self.bias is not None:
                out = out + self.bias
            return out

    architecture("e3nn-o3-cloud", task="vector-cloud", sizes=CLOUD_SIZES,
                 reference="e3nn.o3.FullyConnectedTensorProduct, o3.Linear and e3nn.nn.Gate per point",
                 claims=[o3_claim()],
                 description="e3nn tensor products and a gate on a point cloud: O(3)-equivariant vectors")(E3nnVectorCloud)

    def _with(**extra: object) -> dict[str, Size]:
        return {k: Size(config={**v.config, **extra}, steps=v.steps, lr=v.lr, n_train=v.n_train, batch=v.batch)
                for k, v in CLOUD_SIZES.items()}

    architecture("e3nn-o3-cloud-bias", task="vector-cloud", sizes=_with(vector_bias=True),
                 reference="the e3nn cloud network plus a learned bias on its vector output",
                 claims=[o3_claim().falsely("a learned constant 3-vector is added to every output vector: it does not "
                                            "rotate with the input")],
                 description="Negative control: e3nn cloud network with a bias on the vector part")(E3nnVectorCloud)
    architecture("e3nn-o3-cloud-leaky-gate", task="vector-cloud", sizes=_with(leaky_gate=True),
                 reference="the e3nn cloud network whose gating scalars read the x-component of the point's vector",
                 claims=[o3_claim().falsely("the gates read v_x, a coordinate of a vector, as if it were a scalar: a "
                                            "rotation changes the gating")],
                 description="Negative control: e3nn cloud network with a non-equivariant gate")(E3nnVectorCloud)
