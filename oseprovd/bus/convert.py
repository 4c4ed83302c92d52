"""One converter between Python values (pydantic models, dicts) and typed D-Bus values.

Records go out as `a{sv}`; each value's signature follows its Python type. Incoming
variants are unwrapped to plain values before a pydantic model validates them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from dbus_fast import Variant
from pydantic import BaseModel


def signature_of(value: Any) -> str:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int):
        return "x"
    if isinstance(value, float):
        return "d"
    if isinstance(value, str | Enum):
        return "s"
    if isinstance(value, bytes):
        return "ay"
    if isinstance(value, BaseModel | Mapping):
        return "a{sv}"
    if isinstance(value, Sequence):
        sigs = {signature_of(v) for v in value}
        # An empty or mixed list becomes av: the receiver still sees typed values.
        return f"a{sigs.pop()}" if len(sigs) == 1 else "av"
    raise TypeError(f"no D-Bus signature for {type(value).__name__}")


def to_plain(value: Any, sig: str) -> Any:
    """The value in the shape dbus-fast marshals for `sig`."""
    if sig == "a{sv}":
        return to_dbus(value)
    if sig == "av":
        return [to_variant(v) for v in value]
    if sig.startswith("a") and sig != "ay":
        return [to_plain(v, sig[1:]) for v in value]
    if isinstance(value, Enum):
        return str(value.value)
    return value


def to_variant(value: Any) -> Variant:
    sig = signature_of(value)
    return Variant(sig, to_plain(value, sig))


def to_dbus(record: BaseModel | Mapping[str, Any]) -> dict[str, Variant]:
    """A model or dict as `a{sv}`; None values are left out (D-Bus has no null)."""
    data = record.model_dump(mode="python") if isinstance(record, BaseModel) else record
    return {str(k): to_variant(v) for k, v in data.items() if v is not None}


def unwrap(value: Any) -> Any:
    """Variants and containers of them as plain Python values."""
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value
