"""One module per property: its symbolic obligation, numeric defect and tolerance model."""
from verify.properties.base import Property, Tolerance
from verify.properties.conformal_symplectic import ConformalSymplectic
from verify.properties.invertible import Invertible
from verify.properties.lipschitz import Lipschitz
from verify.properties.log_det import LogDet
from verify.properties.on_manifold import OnManifold
from verify.properties.stable_step import StableStep
from verify.properties.symplectic import Symplectic
from verify.properties.volume_preserving import VolumePreserving

__all__ = [
    "Property", "Tolerance", "Symplectic", "ConformalSymplectic", "VolumePreserving", "Invertible", "LogDet", "Lipschitz",
    "StableStep", "Equivariant", "EquivarianceMeasurement", "OnManifold",
]


def __getattr__(name: str):
    # Equivariant imports verify (actions, groups), which imports verify.properties.base: load it lazily to avoid a cycle
    if name in ("Equivariant", "EquivarianceMeasurement"):
        from verify.properties import equivariant

        return getattr(equivariant, name)
    raise AttributeError(f"module 'verify.properties' has no attribute {name!r}")
