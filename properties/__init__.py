"""One module per property: its symbolic obligation, numeric defect and tolerance model."""
from properties.base import Property, Tolerance
from properties.invertible import Invertible
from properties.stable_step import StableStep
from properties.symplectic import Symplectic
from properties.volume_preserving import VolumePreserving

__all__ = [
    "Property", "Tolerance", "Symplectic", "VolumePreserving", "Invertible", "StableStep",
    "Equivariant", "EquivarianceMeasurement",
]


def __getattr__(name: str):
    # Equivariant imports verify (actions, groups), which imports properties.base: load it lazily to avoid a cycle
    if name in ("Equivariant", "EquivarianceMeasurement"):
        from properties import equivariant

        return getattr(equivariant, name)
    raise AttributeError(f"module 'properties' has no attribute {name!r}")
