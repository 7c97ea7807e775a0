"""Steerable CNNs (escnn) on rotated digits, and their negative controls.

Genuine: C4, D4, C8 classifiers (regular fields, ReLU, group pooling, disk-masked
global mean, linear head: invariant logits), an SO(2) classifier (irreps up to
frequency 2, norm nonlinearities, norm pooling), and a C4 denoiser whose output is an
image (equivariant, not invariant). Controls: a plain CNN claiming C4, a C4 network
with one entry of an expanded filter perturbed, the C4 denoiser declared with ρ_out
acting by g⁻¹, and a C8 network that breaks equivariance only at 135°.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from verify.models.image_tasks import SIZE
from verify.properties.equivariant import Equivariant
from verify.declare.actions import ImageField, disk_mask
from verify.declare.groups import PlaneGroup, trivial
from verify.declare.registry import Size, architecture

REFERENCE = "M. Weiler, G. Cesa, General E(2)-Equivariant Steerable CNNs, NeurIPS 2019 (escnn)"


def _enn() -> Any:
    from escnn import nn as enn

    _patch_escnn_null()
    return enn


def _patch_escnn_null() -> None:
    """escnn 1.0.11 passes an np.matrix to scikit-learn's randomized_svd, which recent scikit-learn rejects
    (TypeError when a dihedral kernel basis is built); hand it a plain array instead."""
    import numpy as np
    import escnn.group._numerical as numerical

    if getattr(numerical.null, "_verify_patched", False):
        return
    original = numerical.null

    def null(A: Any, *args: Any, **kwargs: Any) -> Any:
        return original(np.asarray(A), *args, **kwargs)

    null._verify_patched = True  # type: ignore[attr-defined]
    numerical.null = null


class MaskedMean(nn.Module):
    """Mean over the central disk: invariant under every element that maps the disk onto itself."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("mask", disk_mask(size, margin=1.0).to(torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # mean and root-mean-square over the disk: invariant under its grid symmetries, and smooth (a max
        # over pixels would amplify the filters' grid discretisation at 45°: measured 3.4 % vs 0.5 %)
        n = self.mask.sum()
        mean = (x * self.mask).sum((-2, -1)) / n
        rms = torch.sqrt((x * x * self.mask).sum((-2, -1)) / n + 1e-12)
        return torch.cat([mean, rms], dim=-1)

    def spatial_pooling(self) -> tuple[torch.Tensor, int]:
        """For the symbolic walk (verify/derive/steerable.py): my output is, per channel, 2 statistics (mean, rms) that see
        the input only through sums over this mask of pointwise functions of it."""
        return self.mask, 2


def _head(features: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(2 * features, 32), nn.ReLU(), nn.Linear(32, classes))


class PerturbedR2Conv(nn.Module):
    """An escnn R2Conv whose expanded filter has one entry shifted by a fixed δ (a buffer, not trained)."""

    def __init__(self, conv: Any, entry: tuple[int, int, int, int], delta: float) -> None:
        super().__init__()
        self.conv = conv
        self.in_type, self.out_type = conv.in_type, conv.out_type
        self.kernel_size = conv.kernel_size
        self.basisexpansion = conv.basisexpansion
        self.entry = entry
        E = torch.zeros(conv.out_type.size, conv.in_type.size, conv.kernel_size, conv.kernel_size)
        E[entry] = delta
        self.register_buffer("perturbation", E)

    def forward(self, x: Any) -> Any:
        enn = _enn()
        filt, bias = self.conv.expand_parameters()
        y = torch.nn.functional.conv2d(x.tensor, filt + self.perturbation, bias, padding=self.conv.padding)
        return enn.GeometricTensor(y, self.out_type)

    def filter_parametrisation(self) -> tuple[nn.Module, torch.Tensor]:
        """For the symbolic walk (verify/derive/steerable.py): my filter is conv's steerable filter plus this fixed tensor,
        my bias conv's, and forward is conv2d with them."""
        return self.conv, self.perturbation


class SteerableClassifier(nn.Module):
    """Regular-field steerable CNN (C_N or D_N) with group pooling: rotation(-reflection) invariant logits."""

    def __init__(self, N: int = 4, flips: bool = False, channels: int = 4, classes: int = 10, kernel: int = 5,
                 perturb: float = 0.0, break_at: float | None = None) -> None:
        super().__init__()
        enn = _enn()
        self.group = PlaneGroup(N, flips)
        gs = self.group.escnn_gspace()
        self.in_type = enn.FieldType(gs, [gs.trivial_repr])
        h = enn.FieldType(gs, [gs.regular_repr] * channels)
        conv1 = enn.R2Conv(self.in_type, h, kernel, padding=kernel // 2)
        if perturb:
            # off-centre entry of output channel 0, input 0: the constraint ties it to its rotated copies
            conv1 = PerturbedR2Conv(conv1, (0, 0, kernel // 2 - 1, kernel // 2), perturb)
        self.conv1, self.act1 = conv1, enn.ReLU(h)
        self.conv2, self.act2 = enn.R2Conv(h, h, kernel, padding=kernel // 2), enn.ReLU(h)
        self.pool = enn.GroupPooling(h)
        self.mean = MaskedMean(SIZE)
        self.head = _head(channels, classes)
        self.break_at = break_at

    def features(self, x: torch.Tensor) -> torch.Tensor:
        enn = _enn()
        t = enn.GeometricTensor(x, self.in_type)
        t = self.act2(self.conv2(self.act1(self.conv1(t))))
        return self.mean(self.pool(t).tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SteerableDenoiser(nn.Module):
    """C_N steerable image-to-image network (trivial → regular → regular → trivial fields): an equivariant map."""

    def __init__(self, N: int = 4, channels: int = 3, kernel: int = 5) -> None:
        super().__init__()
        enn = _enn()
        self.group = PlaneGroup(N, False)
        gs = self.group.escnn_gspace()
        self.in_type = enn.FieldType(gs, [gs.trivial_repr])
        h = enn.FieldType(gs, [gs.regular_repr] * channels)
        self.net = enn.SequentialModule(
            enn.R2Conv(self.in_type, h, kernel, padding=kernel // 2), enn.ReLU(h),
            enn.R2Conv(h, h, kernel, padding=kernel // 2), enn.ReLU(h),
            enn.R2Conv(h, self.in_type, kernel, padding=kernel // 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enn = _enn()
        return x + self.net(enn.GeometricTensor(x, self.in_type)).tensor


class SO2Classifier(nn.Module):
    """SO(2) steerable CNN: band-limited fields (frequencies 0..2) with Fourier ELU nonlinearities (ELU on 16 sampled
    rotations, projected back), a 1×1 projection onto invariant fields, disk mean; invariant logits.

    A norm-ReLU variant (irreps 1..2, NormPool) trained the same way was measured at a Lie derivative of 0.115 per
    radian and 4.3 % at Haar-drawn angles: the norm nonlinearity is not smooth where a field's norm is small.
    """

    def __init__(self, channels: int = 2, classes: int = 10, kernel: int = 7, frequency: int = 2) -> None:
        super().__init__()
        enn = _enn()
        self.group = PlaneGroup(None, False)
        gs = self.group.escnn_gspace(maximum_frequency=frequency)
        self.in_type = enn.FieldType(gs, [gs.trivial_repr])
        irreps = gs.fibergroup.bl_irreps(frequency)
        self.act1 = enn.FourierELU(gs, channels, irreps=irreps, N=16)
        self.act2 = enn.FourierELU(gs, channels, irreps=irreps, N=16)
        self.conv1 = enn.R2Conv(self.in_type, self.act1.in_type, kernel, padding=kernel // 2)
        self.conv2 = enn.R2Conv(self.act1.out_type, self.act2.in_type, kernel, padding=kernel // 2)
        self.invariants = enn.R2Conv(self.act2.out_type, enn.FieldType(gs, [gs.trivial_repr] * channels), 1)
        self.mean = MaskedMean(SIZE)
        self.head = _head(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enn = _enn()
        t = self.act2(self.conv2(self.act1(self.conv1(enn.GeometricTensor(x, self.in_type)))))
        return self.head(self.mean(self.invariants(t).tensor))


class PlainCNN(nn.Module):
    """An ordinary CNN with the same pooling and head: nothing ties its filters to rotations."""

    def __init__(self, channels: int = 8, classes: int = 10, kernel: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.mean = MaskedMean(SIZE)
        self.head = _head(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mean(torch.relu(self.conv2(torch.relu(self.conv1(x))))))


def _image(G: PlaneGroup, channels: int = 1) -> ImageField:
    return ImageField(trivial(G, channels))


def _logits(G: PlaneGroup) -> ImageField:
    return ImageField(trivial(G, 10), spatial=False)


# escnn samples its steerable filters on the 5×5 (7×7) pixel grid, so at rotations that are not grid symmetries a
# C8 or SO(2) network is equivariant only up to its own discretisation; the claim states that allowance instead of
# pretending exactness. Grid symmetries (90°, flips) are still held to round-off. Measured on the quick-trained C8
# classifier, per input (the worst input, not a batch average): 2.6 % at 45° on the enumerated digits, 3.2 % on a
# digit the hypothesis search scaled by 1.24; its untrained copy 0.12 %. Pushing the same digits through the
# network after rotating them twice by 45° against once by 90° gives ≤ 3e-4: the error is the network's (its
# sampled filters), not the harness's. A 2 % allowance (a batch average, until the search became per input) was
# therefore false for the trained network; the claims state 5 %, and `c8-claims-half-percent` shows the check
# refuting the same network under a 0.5 % claim.
GRID_RTOL = 0.05


C4, D4, C8, SO2G = PlaneGroup(4), PlaneGroup(4, True), PlaneGroup(8), PlaneGroup(None)
QUICK = dict(steps=150, lr=2e-2, n_train=512, batch=64)


def _sizes(quick: Mapping[str, Any], **kw: Any) -> dict[str, Size]:
    # "full" (the reports) keeps the quick architecture and trains it longer: a wider escnn model took
    # ~11 min per architecture on 2 CPU cores, which the main job's 10-minute budget cannot carry
    q = dict(QUICK)
    q.update(kw)
    return {"quick": Size(config=dict(quick), **q), "full": Size(config=dict(quick), steps=300, lr=1e-2, n_train=1797, batch=64)}


architecture(
    "c4-steerable-cnn", task="rotated-digits", reference=REFERENCE,
    claims=[Equivariant(C4, _image(C4), _logits(C4))],
    description="escnn C4 steerable CNN (regular fields, group pooling) on rotated digits: C4-invariant logits.",
    sizes=_sizes({"N": 4, "channels": 3}),
)(SteerableClassifier)

architecture(
    "d4-steerable-cnn", task="rotated-digits", reference=REFERENCE,
    claims=[Equivariant(D4, _image(D4), _logits(D4))],
    description="escnn D4 steerable CNN (rotations by 90° and reflections): D4-invariant logits.",
    sizes=_sizes({"N": 4, "flips": True, "channels": 2}),
)(SteerableClassifier)

architecture(
    "c8-steerable-cnn", task="rotated-digits", reference=REFERENCE,
    claims=[Equivariant(C8, _image(C8), _logits(C8), grid_rtol=GRID_RTOL)],
    description="escnn C8 steerable CNN: invariant logits; the 45° elements need interpolation and are judged against the measured floor.",
    sizes=_sizes({"N": 8, "channels": 2}),
)(SteerableClassifier)

architecture(
    "so2-steerable-cnn", task="rotated-digits", reference=REFERENCE,
    claims=[Equivariant(SO2G, _image(SO2G), _logits(SO2G), grid_rtol=GRID_RTOL)],
    description="escnn SO(2) steerable CNN (band-limited fields, Fourier ELU): invariant logits under every rotation; "
                "checked at the 4 exact quarter turns, 16 Haar-drawn angles, hypothesis-drawn angles and by its Lie derivative.",
    sizes=_sizes({"channels": 2}),
)(SO2Classifier)

architecture(
    "c4-steerable-denoiser", task="digits-denoise", reference=REFERENCE,
    claims=[Equivariant(C4, _image(C4), _image(C4))],
    description="escnn C4 image-to-image denoiser: the output image rotates with the input.",
    sizes=_sizes({"N": 4, "channels": 2}),
)(SteerableDenoiser)

# ---------------------------------------------------------------------------- negative controls
architecture(
    "plain-cnn-c4", task="rotated-digits",
    claims=[Equivariant(C4, _image(C4), _logits(C4)).falsely(
        "an ordinary Conv2d has free 5×5 filters; rotation augmentation makes it only approximately invariant")],
    description="Negative control: a plain CNN trained with rotation augmentation, claiming exact C4 invariance.",
    sizes=_sizes({"channels": 6}),
)(PlainCNN)

architecture(
    "c4-perturbed-filter", task="rotated-digits", reference=REFERENCE,
    claims=[Equivariant(C4, _image(C4), _logits(C4)).falsely(
        "one entry of the first layer's expanded escnn filter is shifted by a fixed δ = 0.5, outside the steerable basis")],
    description="Negative control: escnn C4 CNN with one expanded-filter entry perturbed.",
    sizes=_sizes({"N": 4, "channels": 3, "perturb": 0.5}),
)(SteerableClassifier)


architecture(
    "c8-claims-half-percent", task="rotated-digits", reference=REFERENCE,
    claims=[Equivariant(C8, _image(C8), _logits(C8), grid_rtol=0.005).falsely(
        "the genuine C8 network (same architecture, data and seed as c8-steerable-cnn) claimed equivariant to 0.5 % at "
        "45°: its sampled 5×5 filters leave ≈2.6 % on some digits, so the claim is false at the four 45° elements only")],
    description="Negative control: the C8 classifier with an over-tight grid allowance (0.5 %); exact elements still hold, "
                "the interpolated ones are refuted (the check can fail at elements that need interpolation, not only at grid ones).",
    sizes=_sizes({"N": 8, "channels": 2}),
)(SteerableClassifier)


def _inverted_image(G: PlaneGroup) -> ImageField:
    return ImageField(trivial(G).inverse_of())


architecture(
    "c4-denoiser-inverse-rep", task="digits-denoise", reference=REFERENCE,
    claims=[Equivariant(C4, _image(C4), _inverted_image(C4)).falsely(
        "the declared output representation acts by g⁻¹ where g is meant: the output is rotated the wrong way")],
    description="Negative control: the genuine C4 denoiser with its output representation declared with g⁻¹ "
                "(wrong for 90° and 270°, right for 0° and 180°).",
    sizes=_sizes({"N": 4, "channels": 2}),
)(SteerableDenoiser)


def _typo_table(G: PlaneGroup) -> ImageField:
    r3, r5 = G.element(3 / 8), G.element(5 / 8)
    return ImageField(trivial(G), table=((r3, r5),))


architecture(
    "c8-denoiser-table-typo", task="digits-denoise", reference=REFERENCE,
    claims=[Equivariant(C8, _image(C8), _typo_table(C8), grid_rtol=GRID_RTOL).falsely(
        "the output transform is a hand-written table of grid rotations whose entry for 135° holds 225°: "
        "wrong for that one element only (a 20-draw sampler misses it with probability (7/8)^20 ≈ 7 %)")],
    description="Negative control: a C8 denoiser whose declared output action has a lookup-table typo at 135°.",
    sizes=_sizes({"N": 8, "channels": 2}),
)(SteerableDenoiser)
