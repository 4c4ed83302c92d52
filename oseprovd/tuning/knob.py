"""The common knob interface: read, validate, apply, revert, verify.

A knob is one kernel or file setting on this machine (one sysctl key, one cpufreq policy's
governor, one disk's scheduler). Families (sysctl, cpu, disk, memory, network, limits)
turn a profile section into knobs with targets. A knob that does not exist here reads as
None and is "not applicable": that is a normal answer, never an error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


class Knob(ABC):
    """One setting. Subclasses implement read() and write(); the rest has defaults."""

    family: str = ""
    # Power knobs are the ones power-profiles-daemon, TuneD and TLP also manage.
    power: bool = False
    # A switch to a profile that sets this knob to another value puts the original back
    # first (undoing side effects such as a loaded module); see ManagedFileKnob.
    restore_before_switch: bool = True
    # Written with fsyncs (a file): the engine writes it alongside the other knobs.
    slow_write: bool = False
    # Which other knobs writing this one can move: "" none; a name: the knobs of that
    # name (vm.dirty_bytes zeroes vm.dirty_ratio); "*" any (the safe default: a governor
    # change moves the EPP, a platform profile may move both). An apply reads the new
    # profile's originals before putting the old one's leftovers back only when none
    # of them can move a knob it sets.
    coupling: str = "*"

    def __init__(self, knob_id: str) -> None:
        self.id = knob_id

    @abstractmethod
    def read(self) -> str | None:
        """The current value, normalized; None when the knob does not exist here."""

    @abstractmethod
    def write(self, value: str) -> None:
        """Write a (validated) value. The kernel's refusal surfaces as OSError."""

    def prepare(self, value: str) -> None:
        """Get ready to write `value` without changing anything visible (a file's temp
        copy); write(value) then finishes it. Most knobs have nothing to prepare."""
        return None

    def discard_prepared(self) -> None:
        """Undo prepare() when the value is not written after all."""
        return None

    def not_applicable_reason(self, target: str) -> str | None:
        """Why `target` cannot be used on this machine (the knob exists), or None."""
        return None

    def same(self, current: str | None, target: str) -> bool:
        if current is None:
            return False
        return " ".join(current.split()) == " ".join(target.split())

    def capture(self) -> dict[str, Any]:
        """Everything needed to restore this knob exactly; JSON-serializable."""
        return {"value": self.read()}

    def capture_known(self, value: str | None) -> dict[str, Any]:
        """capture(), given the value just read (a knob whose capture is more than its
        value reads what else it needs)."""
        if type(self).capture is Knob.capture:
            return {"value": value}
        return self.capture()

    def restore(self, saved: dict[str, Any]) -> None:
        value = saved.get("value")
        # Already there: no write. Some pairs (vm.dirty_ratio/vm.dirty_bytes) zero each
        # other, and writing the zero back would be refused.
        if value is not None and not self.same(self.read(), str(value)):
            self.write(str(value))

    def is_restored(self, saved: dict[str, Any]) -> bool:
        return self.capture() == saved

    def display(self, saved: dict[str, Any]) -> str | None:
        """The captured state as a short value for plans and reports."""
        value = saved.get("value")
        return None if value is None else str(value)


@dataclass
class Setting:
    """A knob with the value a profile wants for it (and where that value came from)."""

    knob: Knob
    target: str
    source: str  # "profile-name: section.key", for reports and errors


class PlanItem(BaseModel):
    knob: str
    family: str
    current: str | None
    target: str
    applicable: bool
    change: bool  # applicable and current differs from target
    reason: str = ""  # why not applicable, or what blocks it
    source: str = ""


class KnobOutcome(BaseModel):
    knob: str
    target: str
    before: str | None
    after: str | None
    status: str  # "changed", "unchanged", "not-applicable", "did-not-take", "failed"
    detail: str = ""


class DriftItem(BaseModel):
    knob: str
    target: str
    current: str | None
    status: str  # "ok", "drifted", "not-applicable"


def normalize_value(value: object) -> str:
    """Profile values (TOML ints, bools, strings, lists of ints) as the text a kernel reads."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list | tuple):
        return " ".join(normalize_value(v) for v in value)
    raise TypeError(f"unsupported value {value!r}")


class AbsentKnob(Knob):
    """Stands for a setting with nothing to act on here (no cpufreq, no disks): the plan
    shows it as not applicable instead of silently dropping it."""

    def __init__(self, knob_id: str, family: str, reason: str, power: bool = False) -> None:
        super().__init__(knob_id)
        self.family = family
        self.reason = reason
        self.power = power

    def read(self) -> str | None:
        return None

    def write(self, value: str) -> None:
        raise RuntimeError(f"{self.id} does not exist here")
