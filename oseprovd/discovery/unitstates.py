"""Runtime states of systemd units (active/sub state) merged into the unit-file list.

The files say what is installed and enabled; only the running systemd knows what is
running. The bus layer provides a UnitStateSource that asks systemd's ListUnits; the
engine never talks D-Bus itself. The source is given only when the target is the live
system: systemd's answer describes the host, not a mounted image.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

UNITS_TIMEOUT = 10.0


class UnitRuntime(BaseModel):
    name: str
    description: str | None = None
    load_state: str  # loaded, not-found, masked, error
    active_state: str  # active, inactive, failed, activating, deactivating, reloading
    sub_state: str  # running, exited, dead, listening, mounted, ...


class UnitStateSource(Protocol):
    def list_units(self, timeout: float) -> list[UnitRuntime] | None:
        """The units systemd has loaded; None when systemd is not on the bus. Called from
        a collector's thread; raises on an error (the collector reports it)."""
        ...
