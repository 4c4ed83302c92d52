"""Where collectors read from: the target root and the kernel's pseudo filesystems.

Production uses the defaults (the running system). A test hands a sandbox tree laid out
like an EC2 guest (or a Dell server) and every collector reads that instead.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator


class SystemRoots(BaseModel):
    """The five roots a collector may read. Paths are absolute."""

    model_config = ConfigDict(frozen=True)

    target: Path = Path("/")
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    dev: Path = Path("/dev")
    run: Path = Path("/run")

    @field_validator("target", "proc", "sys", "dev", "run")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"{value} is not an absolute path")
        return value

    @classmethod
    def sandbox(cls, base: Path) -> SystemRoots:
        """Every root inside one tree: base/, base/proc, base/sys, base/dev, base/run."""
        return cls(target=base, proc=base / "proc", sys=base / "sys", dev=base / "dev",
                   run=base / "run")

    @property
    def is_live(self) -> bool:
        """True when the target is the running system (so its binaries may be executed)."""
        return self.target == Path("/") and self.proc == Path("/proc")
