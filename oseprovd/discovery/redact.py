"""Sensitive fields: marked where they are declared, removed by one function.

A field declared with `sensitive()` (serial numbers, product UUID, MAC addresses) is
left out for callers without org.ose.discovery.read-sensitive, like hostnamed's
Describe does: the bus layer calls `redact(report)` and sends the copy.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, Field

M = TypeVar("M", bound=BaseModel)

_MARK = "sensitive"


def sensitive(**kwargs: Any) -> Any:
    """A field that is None by default and is dropped by redact()."""
    return Field(default=None, json_schema_extra={_MARK: True}, **kwargs)


def is_sensitive(model_cls: type[BaseModel], field: str) -> bool:
    extra = model_cls.model_fields[field].json_schema_extra
    return isinstance(extra, dict) and extra.get(_MARK) is True


def sensitive_fields(model_cls: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name in model_cls.model_fields if is_sensitive(model_cls, name))


def _redact_value(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return redact(value)
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


def redact(model: M) -> M:
    """A deep copy of `model` with every sensitive field set to None."""
    cls = type(model)
    update: dict[str, Any] = {}
    for name in cls.model_fields:
        if is_sensitive(cls, name):
            update[name] = None
        else:
            update[name] = _redact_value(getattr(model, name))
    return model.model_copy(update=update)
