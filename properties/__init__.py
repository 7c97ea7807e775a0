"""One module per property: its symbolic obligation, numeric defect and tolerance model."""
from properties.base import Property, Tolerance
from properties.invertible import Invertible
from properties.stable_step import StableStep
from properties.symplectic import Symplectic
from properties.volume_preserving import VolumePreserving

__all__ = ["Property", "Tolerance", "Symplectic", "VolumePreserving", "Invertible", "StableStep"]
