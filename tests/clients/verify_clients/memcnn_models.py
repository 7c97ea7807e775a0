"""memcnn (memory-saving invertible networks): registered raw, with no wrapper. InvertibleModuleWrapper
(keep_input=False) frees its input's storage after each call and differentiates through a checkpointing
autograd.Function that refuses torch.autograd.grad: the verifier calls it on fresh copies of its inputs and
computes Jacobians with .backward()."""
from __future__ import annotations

from torch import nn

from verify import Size, architecture
from verify.properties import Invertible, VolumePreserving
from verify_clients import available

SIZES = {"quick": Size(config={"width": 16}, steps=60, lr=5e-3), "full": Size(config={"width": 32}, steps=600, lr=2e-3)}


def _mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, 1))


if available("memcnn"):
    import memcnn

    def memcnn_additive(width: int = 16) -> nn.Module:
        """memcnn AdditiveCoupling (y1 = x1 + F(x2), y2 = x2 + G(y1)) in an InvertibleModuleWrapper."""
        coupling = memcnn.AdditiveCoupling(Fm=_mlp(width), Gm=_mlp(width), split_dim=1)
        wrapper = memcnn.InvertibleModuleWrapper(coupling, keep_input=False, keep_input_inverse=False)
        wrapper.depth = 2  # two coupling updates: what the verifier's round-off model counts (not every nn.Linear)
        return wrapper

    def memcnn_affine(width: int = 16) -> nn.Module:
        """memcnn AffineCoupling (y1 = e^F(x2)·x1 + F(x2), ...) in an InvertibleModuleWrapper."""
        coupling = memcnn.AffineCoupling(Fm=_mlp(width), Gm=_mlp(width), adapter=memcnn.AffineAdapterNaive,
                                         split_dim=1)
        wrapper = memcnn.InvertibleModuleWrapper(coupling, keep_input=False, keep_input_inverse=False)
        wrapper.depth = 2
        return wrapper

    architecture("memcnn-additive", task="pendulum", sizes=SIZES, reference="memcnn AdditiveCoupling",
                 description="memcnn AdditiveCoupling in an InvertibleModuleWrapper (keep_input=False)",
                 claims=[Invertible(), VolumePreserving()])(memcnn_additive)
    architecture("memcnn-affine", task="pendulum", sizes=SIZES, reference="memcnn AffineCoupling (AffineAdapterNaive)",
                 description="memcnn AffineCoupling in an InvertibleModuleWrapper (keep_input=False)",
                 claims=[Invertible(),
                         VolumePreserving().falsely("affine coupling: det J = exp(F(x2) + G(y1)) ≠ 1")])(memcnn_affine)
