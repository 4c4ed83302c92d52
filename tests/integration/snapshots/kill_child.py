"""Run one rollback (or undo) and SIGKILL ourselves at a chosen journal step.

argv[1] is a JSON spec: {"configs": [...], "db": ..., "journal": ..., "snapshot": ...,
"kill_at": N, "when": "before" | "after", "undo": null | [paths]}: die just before
(or just after) writing the N-th journal entry (records and notes alike), i.e. at a step
boundary, like a daemon killed there. With "kill_rename": N (and kill_at 0) it dies
instead just before the N-th rename(2), i.e. inside an undo's batch of renames.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from typing import Any

from oseprovd.snapshots.btrfs_backend import BtrfsBackend
from oseprovd.snapshots.copy_backend import CopyBackend
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.journal import FileJournal
from oseprovd.snapshots.models import SnapshotConfig
from oseprovd.snapshots.repository import SqliteSnapshotRepository


class KillingJournal:
    def __init__(self, inner: FileJournal, kill_at: int, when: str) -> None:
        self.inner = inner
        self.kill_at = kill_at
        self.when = when
        self.n = 0

    def record(self, step: str, data: dict[str, Any]) -> None:
        self._step(lambda: self.inner.record(step, data))

    def note(self, step: str, data: dict[str, Any]) -> None:
        self._step(lambda: self.inner.note(step, data))

    def _step(self, write: Any) -> None:
        self.n += 1
        if self.n == self.kill_at and self.when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        write()
        if self.n == self.kill_at and self.when == "after":
            os.kill(os.getpid(), signal.SIGKILL)


def kill_at_rename(n: int) -> None:
    """SIGKILL this process just before its n-th os.rename."""
    real = os.rename
    count = 0

    def rename(*args: Any, **kwargs: Any) -> None:
        nonlocal count
        count += 1
        if count == n:
            os.kill(os.getpid(), signal.SIGKILL)
        real(*args, **kwargs)

    os.rename = rename  # type: ignore[assignment]


def main() -> None:
    spec = json.loads(sys.argv[1])
    configs = [SnapshotConfig.model_validate(c) for c in spec["configs"]]
    repo = SqliteSnapshotRepository(sqlite3.connect(spec["db"], isolation_level=None))
    journal = KillingJournal(FileJournal(spec["journal"]), spec["kill_at"], spec["when"])
    engine = SnapshotEngine({c.name: c for c in configs}, repo,
                            {"btrfs": BtrfsBackend(), "copy": CopyBackend()}, journal)
    if spec.get("recover"):
        # what the daemon does at start: recover from the journal (killed again here)
        from oseprovd.snapshots.journal import read_journal

        engine.recover(read_journal(spec["journal"]))
    elif spec.get("undo") is not None:
        if spec.get("kill_rename"):
            kill_at_rename(int(spec["kill_rename"]))
        engine.undo(spec["snapshot"], spec["undo"])
    else:
        engine.rollback(spec["snapshot"])
    print(journal.n)


if __name__ == "__main__":
    main()
