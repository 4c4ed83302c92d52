"""Run a reset execute (or rollback) on a sandbox and SIGKILL ourselves at a chosen
point: before/after the N-th journal entry (reset's and the snapshot engine's journals
count together) or just before removing the k-th item.

argv[1]: JSON {"tmp": ..., "root": ..., "action": "execute" | "rollback", "plan",
"digest", "execution", "kill_at": N | null, "when": "before" | "after",
"kill_item": k | null, "kill_step": a journal step name (its first entry) | null}
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from oseprovd.reset.models import ExecuteOptions
from oseprovd.snapshots.journal import FileJournal
from tests.unit.reset.livedin import LivedIn, open_rig


class Counter:
    def __init__(self, kill_at: int | None, when: str, step: str | None = None) -> None:
        self.n = 0
        self.kill_at = kill_at
        self.when = when
        self.step = step


class KillingJournal:
    def __init__(self, inner: FileJournal, counter: Counter) -> None:
        self.inner = inner
        self.c = counter

    def record(self, step: str, data: dict[str, Any]) -> None:
        self.c.n += 1
        if self.c.step is not None and step == self.c.step:
            self.c.kill_at = self.c.n
        if self.c.n == self.c.kill_at and self.c.when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        self.inner.record(step, data)
        if self.c.n == self.c.kill_at and self.c.when == "after":
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    spec = json.loads(sys.argv[1])
    counter = Counter(spec.get("kill_at"), spec.get("when", "before"),
                      spec.get("kill_step"))
    seen = [0]

    def hook(rel: str) -> None:
        seen[0] += 1
        if seen[0] == spec.get("kill_item"):
            os.kill(os.getpid(), signal.SIGKILL)

    tmp, root = Path(spec["tmp"]), Path(spec["root"])
    extra: dict[str, Any] = {}
    if spec.get("apt"):
        from oseprovd.reset.packages import AptChroot
        extra["packages"] = AptChroot()
    rig = open_rig(tmp, root, LivedIn(root=root), before_remove=hook, **extra)
    rig.snapshots.journal = KillingJournal(rig.snap_journal, counter)
    journal = KillingJournal(rig.journal, counter)
    if spec["action"] == "execute":
        rig.engine.execute(spec["plan"], spec["digest"], ExecuteOptions(), journal)
    else:
        rig.engine.rollback(spec["execution"], journal)
    print("finished")


if __name__ == "__main__":
    main()
