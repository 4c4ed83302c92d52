"""Request models of the core interfaces: validation is pure, and an options dict
accepts only known keys."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from oseprovd.bus.convert import unwrap
from oseprovd.errors import InvalidArguments
from oseprovd.store.jobs import JobState


class Options(BaseModel):
    """Base of every options dict: strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @classmethod
    def from_dbus(cls, options: dict[str, Any]) -> Any:
        unknown = sorted(set(options) - set(cls.model_fields))
        if unknown:
            known = ", ".join(sorted(cls.model_fields)) or "none"
            raise InvalidArguments(
                f"unknown option {unknown[0][:64]!r}; known options: {known}")
        return cls.model_validate(unwrap(options))


class ListJobsOptions(Options):
    state: JobState | None = None
    limit: int = Field(100, ge=1, le=1000)

    @classmethod
    def from_dbus(cls, options: dict[str, Any]) -> ListJobsOptions:
        plain = unwrap(options)
        if isinstance(plain.get("state"), str):
            # A string is how an enum travels on D-Bus; strict mode would refuse it.
            try:
                plain["state"] = JobState(plain["state"])
            except ValueError:
                raise InvalidArguments(
                    f"unknown state; one of {', '.join(s.value for s in JobState)}") from None
        result: ListJobsOptions = super().from_dbus(plain)
        return result


class JobId(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)
    id: int = Field(ge=1, le=2**63 - 1)


class AuditQuery(Options):
    since: float = Field(0.0, ge=0)
    limit: int = Field(100, ge=1, le=10000)


class DemoJobOptions(Options):
    seconds: float = Field(1.0, ge=0, le=3600)
    steps: int = Field(10, ge=1, le=10000)
    fail: bool = False
    exclusive: bool = False

