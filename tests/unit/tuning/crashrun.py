"""Run one engine operation in a child process and SIGKILL it right after its n-th event.

    python -m tests.unit.tuning.crashrun BASE JOURNAL N OPERATION [PROFILE [EXTRA_DIR]]

An event is any change the engine makes: a journal record or replacement, a write into
/proc or /sys, a file replaced (the rename of its temp file) or removed under the root,
a module loaded or unloaded. A file's new text goes to its invisible temp file while
the begin record is written: that is no event (it would make the first event differ from
run to run), but a kill can land in the middle of it. Killing after each one in turn
covers every point between two changes: before the first knob is written, between two
knobs, between a restore and the next write, before and after the commit. The engine
writes files from a second thread, so a kill can also land inside such a write (as a
real SIGKILL can), and the order of events from the two threads may differ from run to
run. events() is also used in-process to list a twin run's events, so a test knows
about where each kill lands.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.engine import TuningEngine
from oseprovd.tuning.facts import MachineFacts
from oseprovd.tuning.journal import FileJournal
from oseprovd.tuning.profiles import ProfileCatalog

from . import sandbox

# (class, method, how the event is named from the call's first argument, whether the
# call stands for the kernel's own work: a sysctl write or a module load is atomic, so a
# kill from another thread must not land inside the sandbox's imitation of it; our own
# file writes can be cut anywhere, as a real SIGKILL can)
HOOKED: list[tuple[type, str, Callable[[Any], str], bool]] = [
    (FileJournal, "record", lambda step: f"record {step}", False),
    (FileJournal, "replace", lambda _: "replace journal", False),
    (sandbox.SandboxRoot, "write_existing", lambda rel: f"write {rel}", True),
    (TargetRoot, "atomic_write", lambda rel: f"file {rel}", False),
    (TargetRoot, "commit_write", lambda rel: f"file {rel}", False),
    (TargetRoot, "unlink", lambda rel: f"unlink {rel}", False),
    (sandbox.FakeLoader, "load", lambda module: f"load {module}", True),
    (sandbox.FakeLoader, "unload", lambda module: f"unload {module}", True),
]


@contextlib.contextmanager
def events(on_event: Callable[[str], None]) -> Iterator[None]:
    """Call on_event(name) right after each change made while inside (a change that
    raised is no event: it did not happen). Events from several threads are serialized,
    and a kernel-like change and its event are one step."""
    saved = [(cls, name, getattr(cls, name)) for cls, name, _, _ in HOOKED]
    lock = threading.RLock()

    def hook(orig: Callable[..., Any], label: Callable[[Any], str],
             atomic: bool) -> Callable[..., Any]:
        @functools.wraps(orig)
        def wrapper(self: object, first: Any, *args: Any, **kwargs: Any) -> Any:
            with lock if atomic else contextlib.nullcontext():
                result = orig(self, first, *args, **kwargs)
                with lock:
                    on_event(label(first))
            return result
        return wrapper

    for (cls, name, label, atomic), (_, _, orig) in zip(HOOKED, saved, strict=True):
        setattr(cls, name, hook(orig, label, atomic))
    try:
        yield
    finally:
        for cls, name, orig in saved:
            setattr(cls, name, orig)


def main() -> None:
    base, journal, n, op = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    roots = sandbox.roots(base)
    extra = Path(sys.argv[6]) if len(sys.argv) > 6 else None
    engine = TuningEngine(roots, FileJournal(journal), ProfileCatalog(extra_dir=extra),
                          sandbox.FakeLoader(roots.proc), disk_devices=["*"])
    left = [n]

    def count(_: str) -> None:  # called under events()' lock
        left[0] -= 1
        if left[0] == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    with events(count):
        if op == "apply":
            engine.apply(sys.argv[5], MachineFacts())
        else:
            engine.revert()
    print("finished")


if __name__ == "__main__":
    main()
