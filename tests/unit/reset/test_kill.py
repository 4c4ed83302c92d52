"""kill -9 at random points of an execution or a rollback, then recover as a restarted
daemon would (snapshot engine's recover(), then the reset engine's interrupted() and
resume or rollback): the tree must be exactly "plan done" or exactly "as before".
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from oseprovd.errors import NotApplicable
from oseprovd.reset.models import ExecuteOptions, Selection
from oseprovd.snapshots.journal import read_journal
from tests.harness import treemanifest
from tests.harness.components import REPO_ROOT
from tests.unit.reset.livedin import all_paths, make_rig, open_rig

pytestmark = [pytest.mark.slow]

RUNS = 24


def _m(root: Path) -> dict[str, object]:
    """Without atimes: a restore run again after a kill re-reads files it restored
    before (their ctime is newer than their atime, so relatime moves the atime) and
    skips them as unchanged. Everything else (bytes, mode, owner, mtime, xattrs, ACLs,
    hard links) must be exact."""
    m = treemanifest.manifest(root, exclude=(b"var/lib/ose",))
    for e in m["entries"].values():
        e.pop("atime_ns", None)
    return m


def _child(spec: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.unit.reset.kill_child",
                           json.dumps(spec)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("run", range(RUNS))
def test_kill_then_recover(tmp_path: Path, run: int) -> None:
    rnd = random.Random(run + int(os.environ.get("OSE_KILL_SEED", "0")))
    rig = make_rig(tmp_path)
    root = rig.root
    _m(root)
    before = _m(root)
    before_paths = all_paths(root)
    plan = rig.engine.preview(Selection(profile="light"))
    n_items = plan.item_count
    kill_rollback = run % 3 == 2
    spec: dict[str, object] = {"tmp": str(tmp_path), "root": str(root), "plan": plan.id,
                               "digest": plan.digest}
    if kill_rollback:
        done = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
        spec |= {"action": "rollback", "execution": done.execution,
                 "kill_at": rnd.randint(1, 12), "when": rnd.choice(["before", "after"])}
    elif rnd.random() < 0.5:
        spec |= {"action": "execute", "kill_item": rnd.randint(1, n_items)}
    else:
        spec |= {"action": "execute", "kill_at": rnd.randint(1, 7),
                 "when": rnd.choice(["before", "after"])}
    proc = _child(spec)
    assert proc.returncode in (-9, 0), proc.stderr
    # -- a restarted daemon -----------------------------------------------------------
    fresh = open_rig(tmp_path, root, rig.tree)
    fresh.snapshots.recover(read_journal(fresh.snap_journal.path))
    assert fresh.snapshots.pending(read_journal(fresh.snap_journal.path)) == []
    entries = read_journal(fresh.journal.path)
    interrupted = {r.id for r in fresh.engine.interrupted()}
    execs = fresh.engine.list_executions()
    assert len(execs) <= 1
    if not execs:  # killed before the execution was recorded: nothing may have changed
        assert treemanifest.differences(before, _m(root)) == []
        return
    ex = execs[0]
    if proc.returncode == 0:
        assert not interrupted
    elif not kill_rollback:
        assert ex.id in interrupted
    if kill_rollback and any(s == "reset.rollback.begin" for s, _ in entries):
        with pytest.raises(NotApplicable):  # a started rollback is only ever finished
            fresh.engine.resume(ex.id, entries, fresh.journal)
        # also without the rollback's steps (in the daemon they are another job's)
        execute_steps = [(s, d) for s, d in entries if not s.startswith("reset.rollback")]
        if fresh.engine.get_execution(ex.id).state != "done":
            with pytest.raises(NotApplicable):
                fresh.engine.resume(ex.id, execute_steps, fresh.journal)
    if kill_rollback or run % 2 == 0:
        if fresh.engine.get_execution(ex.id).state != "rolled_back":
            fresh.engine.rollback(ex.id, fresh.journal)
        assert treemanifest.differences(before, _m(root)) == []
    else:
        fresh.engine.resume(ex.id, entries, fresh.journal)
        assert all_paths(root) == before_paths - rig.tree.light_removes
        # and the rollback point still holds everything
        fresh.engine.rollback(ex.id, fresh.journal)
        assert treemanifest.differences(before, _m(root)) == []
