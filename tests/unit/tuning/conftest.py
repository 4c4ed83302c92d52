from __future__ import annotations

from pathlib import Path

import pytest

from oseprovd.tuning.engine import TuningEngine
from oseprovd.tuning.journal import FileJournal
from oseprovd.tuning.profiles import ProfileCatalog
from oseprovd.tuning.roots import TuningRoots

from . import sandbox


class Machine:
    """A sandbox machine with an engine on it."""

    def __init__(self, base: Path, extra_profiles: Path | None = None,
                 disk_devices: list[str] | None = None) -> None:
        self.base = base / "machine"
        self.roots: TuningRoots = sandbox.build(self.base)
        self.journal_path = base / "tuning.journal"
        self.extra = extra_profiles
        self.disk_devices = disk_devices
        self.loader = sandbox.FakeLoader(self.roots.proc)
        self.engine = self.new_engine()

    def new_engine(self) -> TuningEngine:
        """A fresh engine on the same machine and journal (as after a daemon restart)."""
        return TuningEngine(sandbox.roots(self.base), FileJournal(self.journal_path),
                            ProfileCatalog(extra_dir=self.extra), self.loader,
                            disk_devices=self.disk_devices)

    def snapshot(self, times: bool = True) -> dict[str, tuple[object, ...]]:
        return sandbox.snapshot(self.base, times)

    def proc(self, key: str) -> str:
        return (self.base / "proc/sys" / key.replace(".", "/")).read_text().strip()

    def sys(self, rel: str) -> str:
        return (self.base / "sys" / rel).read_text().strip()


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


@pytest.fixture
def extra_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tuning-profiles.d"
    d.mkdir()
    return d
