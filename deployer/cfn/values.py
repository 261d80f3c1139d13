"""What a resolved template value carries besides its text.

A ``!Ref Group`` resolves to the group's physical id, but the local cloud needs to know it
*was* a reference to ``Group`` (a deployment group lists Auto Scaling groups by name; the
local cloud wants the logical id). So references resolve to :class:`Reference`, a ``str``
that remembers its target, and an attribute nobody could supply resolves to a placeholder
whose text says so and which the spec extraction refuses wherever the local cloud would
act on it. ``Fn::Base64`` keeps the text readable and marks it :class:`Base64Text`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Reference(str):
    """A ``Ref`` or ``Fn::GetAtt`` result: the value, plus which resource it came from."""

    logical_id: str
    attribute: str | None
    resolved: bool

    def __new__(cls, value: str, logical_id: str, attribute: str | None = None,
                resolved: bool = True) -> Reference:
        ref = super().__new__(cls, value)
        ref.logical_id = logical_id
        ref.attribute = attribute
        ref.resolved = resolved
        return ref

    @property
    def missing(self) -> tuple[str, ...]:
        return () if self.resolved else (f"{self.logical_id}.{self.attribute}",)


class Unresolved(str):
    """Text built (by Fn::Sub / Fn::Join) from at least one attribute nobody supplied."""

    missing: tuple[str, ...]

    def __new__(cls, value: str, missing: tuple[str, ...]) -> Unresolved:
        text = super().__new__(cls, value)
        text.missing = missing
        return text


class Base64Text(str):
    """The text inside ``Fn::Base64``: kept decoded, marked as meant to be base64-encoded."""

    missing: tuple[str, ...]

    def __new__(cls, value: str, missing: tuple[str, ...] = ()) -> Base64Text:
        text = super().__new__(cls, value)
        text.missing = missing
        return text


def missing_attributes(value: Any) -> tuple[str, ...]:
    """Every ``Logical.Attribute`` placeholder anywhere inside ``value``."""
    if isinstance(value, (Reference, Unresolved, Base64Text)):
        return value.missing
    if isinstance(value, dict):
        return tuple(m for item in value.values() for m in missing_attributes(item))
    if isinstance(value, list):
        return tuple(m for item in value for m in missing_attributes(item))
    return ()


def plain(value: Any) -> Any:
    """``value`` with every marked string turned back into a plain ``str`` (for comparing,
    persisting and printing)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


class ResolvedResource(BaseModel):
    """One resource after parameters, conditions and intrinsics are applied."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    logical_id: str
    type: str
    physical_id: str
    # Values keep their markers (Reference, Base64Text, ...); use plain() to drop them.
    properties: dict[str, Any] = Field(default_factory=dict, repr=False)
    depends_on: list[str] = Field(default_factory=list)
    # Mappings as read (Any keeps their line numbers for error messages).
    creation_policy: Any = None
    update_policy: Any = None
    metadata: Any = None
    deletion_policy: str | None = None
    update_replace_policy: str | None = None
    line: int | None = None
    property_lines: dict[str, int] = Field(default_factory=dict)
