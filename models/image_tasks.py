"""Image tasks made from scikit-learn's bundled 8×8 digits (no download): rotated digit classification and denoising.

Digits are upsampled to 29×29 (odd, so the rotation centre is a pixel) by FFT
zero-padding of a Gaussian-smoothed copy, windowed to a central disk, and rotated by
a uniformly random angle (augmentation) with the same FFT-shear rotation the checker
uses. Targets: the class (integer, cross-entropy) or the clean image (denoising).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from verify.declare.actions import fourier_rotate, gaussian_blur
from verify.declare.registry import register_task

SIZE = 29


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float64)[:, None] / 16.0  # (1797, 1, 8, 8) in [0, 1]
    x = torch.nn.functional.pad(x, (1, 0, 1, 0))  # 9×9, odd: a centre pixel
    x = torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bicubic", align_corners=True)
    x = gaussian_blur(x, 1.2)
    c = (SIZE - 1) / 2
    r = torch.arange(SIZE, dtype=torch.float64) - c
    window = torch.exp(-(torch.sqrt(r[:, None] ** 2 + r[None, :] ** 2) / (0.4 * SIZE)) ** 4)
    x = x * window
    x = (x - x.mean()) / x.std()
    return x, torch.tensor(d.target, dtype=torch.long)


@functools.lru_cache(maxsize=16)
def rotated_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n digits (drawn with replacement) rotated by uniform random angles, float64, and their labels."""
    x, y = _digits()
    rng = np.random.default_rng(seed)
    idx = torch.as_tensor(rng.integers(0, x.shape[0], n))
    angles = rng.uniform(-math.pi, math.pi, n)
    xs = x[idx].clone()
    quarter = np.round(angles / (math.pi / 2)).astype(int) % 4
    rest = angles - np.round(angles / (math.pi / 2)) * math.pi / 2
    for k in range(1, 4):  # a quarter turn exactly, the remaining |φ| ≤ 45° by FFT shears
        sel = torch.as_tensor(quarter == k)
        xs[sel] = torch.rot90(xs[sel], k, dims=(-2, -1))
    return fourier_rotate(xs, torch.as_tensor(rest)), y[idx]


@dataclass(frozen=True)
class DigitsClassification:
    name: str = "rotated-digits"
    description: str = "sklearn 8×8 digits upsampled to 29×29, random rotations; 10-way classification (cross entropy)"
    # chance level is ln 10 = 2.30; a quick size (seconds of CPU) must get below 0.9·ln 10: it learned something;
    # accuracy is not what is verified here, and full sizes train 10× longer
    learned_below: float = 0.9 * math.log(10)
    loss_name: ClassVar[str] = "cross entropy, nats"  # what reports call `loss`

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return rotated_digits(n, seed)

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(pred, y)


@dataclass(frozen=True)
class DigitsDenoising:
    name: str = "digits-denoise"
    description: str = "rotated 29×29 digits plus smooth noise → the clean digit (MSE); an image-to-image equivariant task"
    learned_below: float = 0.25  # MSE on standardised images; predicting zero gives ≈ 1

    def dataset(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        clean, _ = rotated_digits(n, seed)
        gen = torch.Generator().manual_seed(seed + 1)
        noise = gaussian_blur(torch.randn(clean.shape, generator=gen, dtype=torch.float64), 1.0)
        return clean + 1.5 * noise, clean


DIGITS = register_task(DigitsClassification())
DENOISE = register_task(DigitsDenoising())
