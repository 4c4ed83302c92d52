"""Run one engine operation in a child process and SIGKILL it after the n-th journal record.

    python -m tests.unit.tuning.crashrun BASE JOURNAL N OPERATION [PROFILE [EXTRA_DIR]]

The kill comes right after a record reached the disk, i.e. at every point between two
steps of the engine: before a write, after a write, before a commit, inside a revert.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from oseprovd.tuning.engine import TuningEngine
from oseprovd.tuning.facts import MachineFacts
from oseprovd.tuning.journal import FileJournal
from oseprovd.tuning.profiles import ProfileCatalog

from . import sandbox


class CrashingJournal(FileJournal):
    def __init__(self, path: Path, after: int) -> None:
        super().__init__(path)
        self.left = after

    def record(self, step: str, data: dict[str, Any]) -> None:
        super().record(step, data)
        self.left -= 1
        if self.left == 0:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    base, journal, n, op = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    roots = sandbox.roots(base)
    extra = Path(sys.argv[6]) if len(sys.argv) > 6 else None
    engine = TuningEngine(roots, CrashingJournal(journal, n), ProfileCatalog(extra_dir=extra),
                          sandbox.FakeLoader(roots.proc), disk_devices=["*"])
    if op == "apply":
        engine.apply(sys.argv[5], MachineFacts())
    else:
        engine.revert()
    print("finished")


if __name__ == "__main__":
    main()
