"""A claim: a property attached to an architecture, with what the project expects of it."""
from __future__ import annotations

from dataclasses import dataclass

from verify.properties.base import Property


@dataclass(frozen=True)
class Claim:
    """`expected=False` marks a negative control: a claim made falsely, which must be refuted."""

    property: Property
    expected: bool = True
    reason: str = ""

    @property
    def name(self) -> str:
        return self.property.name

    def __str__(self) -> str:
        return str(self.property) + ("" if self.expected else " (false claim, must be refuted)")


def as_claim(item: object) -> Claim:
    if isinstance(item, Claim):
        return item
    if isinstance(item, Property):
        return Claim(item)
    from verify.errors import InputError

    raise InputError(
        "claim", item, "a Property instance such as Symplectic() or a Claim",
        "write claims=[Symplectic(), VolumePreserving()] (instances, not classes or strings)",
    )
