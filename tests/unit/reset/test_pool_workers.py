"""The engine's walker pool must not outlive its owner: a daemon killed with SIGKILL
outside systemd's cgroup cleanup (tests, a rescue shell) must leave no workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.harness.components import REPO_ROOT

CHILD = """
import os, sys, time
from pathlib import Path
from oseprovd.reset.engine import ResetEngine
engine = ResetEngine.__new__(ResetEngine)
engine.workers = 2
engine._pool = None
pool = engine._executor()
pids = {pool.submit(os.getpid).result() for _ in range(8)}
print(" ".join(map(str, sorted(pids))), flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_workers_end_when_their_owner_is_killed():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert workers and all(alive(p) for p in workers)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers):
        assert time.monotonic() < deadline, [p for p in workers if alive(p)]
        time.sleep(0.05)
