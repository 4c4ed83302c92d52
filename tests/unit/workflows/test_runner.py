"""The runner over real engines on sandbox trees: a lived-in root (reset, copy-store
snapshots) and a /proc/sys tree (tuning). Ground truth is a manifest of the trees made
by this test (type, mode, owner, bytes or link target), never the engines' reports."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from oseprovd.errors import NotApplicable
from oseprovd.snapshots.journal import FileJournal as SnapJournal
from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.engine import TuningEngine
from oseprovd.tuning.facts import MachineFacts
from oseprovd.tuning.journal import FileJournal as TuningJournal
from oseprovd.tuning.network import ModprobeLoader
from oseprovd.tuning.profiles import ProfileCatalog
from oseprovd.tuning.roots import TuningRoots
from oseprovd.workflows.loader import load_file
from oseprovd.workflows.runner import RunStore, WorkflowFailed, WorkflowRunner
from tests.harness.components import require_root
from tests.unit.reset.livedin import Rig, make_rig
from tests.unit.tuning.sandbox import PROC, RELEASE

TUNING_PROFILE = """
[profile]
description = "workflow test"

[sysctl]
"vm.swappiness" = 10
"vm.dirty_ratio" = 33
"""

WORKFLOW = """
description = "snapshot, clean, tune"

[[step]]
kind = "snapshot"

[[step]]
kind = "reset"
profile = "light"

[[step]]
kind = "tuning"
profile = "wftest"
"""

FACTS = MachineFacts(kernel_release=RELEASE)


@pytest.fixture(autouse=True)
def _root_needed() -> None:
    require_root("the lived-in root has files of several owners")


def manifest(top: Path, skip: tuple[str, ...] = ("var/lib/ose",)) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(top))
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                what: object = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                what = _hash(p)
            else:
                what = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                        st.st_gid, what)
    return out


def _hash(p: Path) -> str:
    # O_NOATIME: reading must not make the light profile's "old" files look used
    fd = os.open(p, os.O_RDONLY | os.O_NOATIME | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class World:
    def __init__(self, tmp_path: Path, **engine_kw: object) -> None:
        (tmp_path / "reset").mkdir()
        self.rig: Rig = make_rig(tmp_path / "reset", **engine_kw)
        self.proc = tmp_path / "proc"
        for rel, value in PROC.items():
            p = self.proc / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(value + "\n")
        (tmp_path / "sys").mkdir()
        extra = tmp_path / "tuning-profiles"
        extra.mkdir()
        (extra / "wftest.toml").write_text(TUNING_PROFILE)
        (extra / "wfbase.toml").write_text(TUNING_PROFILE.replace("= 10", "= 30")
                                           .replace("= 33", "= 25"))
        roots = TuningRoots(TargetRoot(self.proc), TargetRoot(tmp_path / "sys"),
                            TargetRoot(self.rig.root))
        self.tuning = TuningEngine(roots, TuningJournal(tmp_path / "tuning.journal"),
                                   ProfileCatalog(extra_dir=extra), ModprobeLoader())
        self.runs = tmp_path / "workflows"
        self.runner = WorkflowRunner(RunStore(self.runs), self.rig.engine,
                                     self.tuning, self.rig.snapshots)
        self.wfdir = tmp_path / "workflows.d"
        self.wfdir.mkdir()
        self.journal = SnapJournal(tmp_path / "wf-journal.jsonl")

    def state(self) -> tuple[dict[str, tuple[object, ...]], dict[str, str]]:
        """The root's manifest and every knob's value as the kernel would show it (a
        write of "10" reads back "10\n" there; the sandbox keeps what was written)."""
        knobs = {str(p.relative_to(self.proc)): p.read_text().strip()
                 for p in self.proc.rglob("*") if p.is_file()}
        return manifest(self.rig.root), knobs

    def workflow(self, name: str, text: str):  # type: ignore[no-untyped-def]
        p = self.wfdir / f"{name}.toml"
        p.write_text(text)
        return load_file(p)

    def knob(self, rel: str) -> str:
        return (self.proc / "sys" / rel).read_text().strip()


def test_run_then_rollback_returns_every_file_and_knob(tmp_path: Path) -> None:
    w = World(tmp_path)
    before = w.state()
    prepared = w.runner.prepare(w.workflow("tidy", WORKFLOW))
    record = w.runner.run(prepared, w.journal, facts=FACTS, job_id=7)
    assert record.state == "done" and [s.state for s in record.steps] == ["done"] * 3
    # the files the light profile removes are gone, the kept ones are not
    for rel in w.rig.tree.light_removes:
        assert not os.path.lexists(w.rig.root / rel), rel
    for rel in w.rig.tree.keeps:
        assert os.path.lexists(w.rig.root / rel), rel
    assert w.knob("vm/swappiness") == "10" and w.knob("vm/dirty_ratio") == "33"
    # the snapshot step made a snapshot, listed by the snapshot engine itself
    snap = record.steps[0].snapshot
    assert snap is not None and snap in {s.id for s in w.rig.snapshots.list_snapshots("root")}
    kinds = [k for k, _ in w.journal.entries()]
    assert kinds[0] == "workflow.begin" and kinds[-1] == "workflow.done"
    assert w.runner.get_run(record.id).state == "done"

    undone = w.runner.rollback(record.id, w.journal, facts=FACTS)
    assert undone.state == "rolled_back"
    assert w.state() == before
    with pytest.raises(NotApplicable):
        w.runner.rollback(record.id, w.journal, facts=FACTS)


def test_failing_step_stops_the_run_and_rollback_undoes_what_ran(tmp_path: Path) -> None:
    w = World(tmp_path)
    before = w.state()
    wf = w.workflow("broken", WORKFLOW + '\n[[step]]\nkind = "reset"\n'
                    'selection = { profile = "light", classes = ["log"] }\n'
                    '\n[[step]]\nkind = "snapshot"\n')
    prepared = w.runner.prepare(wf)
    # the 4th step's plan no longer matches what was previewed: execute refuses it
    prepared.plans[3] = prepared.plans[3].model_copy(update={"digest": "0" * 64})
    with pytest.raises(WorkflowFailed, match=r"step 4 \(reset\) failed") as info:
        w.runner.run(prepared, w.journal, facts=FACTS)
    assert "steps done: [1, 2, 3]" in str(info.value)
    (record,) = w.runner.list_runs()
    assert record.state == "failed"
    assert [s.state for s in record.steps] == ["done", "done", "done", "failed", "skipped"]
    # it did stop: one snapshot (step 1) besides the reset's own rollback point
    assert len([s for s in w.rig.snapshots.list_snapshots("root")
                if s.userdata.get("run") == record.id]) == 1
    assert w.knob("vm/swappiness") == "10"
    assert w.state() != before

    w.runner.rollback(record.id, w.journal, facts=FACTS)
    assert w.state() == before
    assert w.runner.get_run(record.id).state == "rolled_back"


def test_dry_run_changes_nothing_and_keeps_no_record(tmp_path: Path) -> None:
    w = World(tmp_path)
    before = w.state()
    snaps = len(w.rig.snapshots.list_snapshots("root"))
    record = w.runner.run(w.runner.prepare(w.workflow("tidy", WORKFLOW)), w.journal,
                          dry_run=True, facts=FACTS)
    assert record.state == "done" and record.dry_run
    assert w.state() == before
    assert len(w.rig.snapshots.list_snapshots("root")) == snaps
    assert w.runner.list_runs() == []



class Killed(BaseException):
    """Stands for the daemon dying: not an Exception, so nothing on the way catches it."""


def test_a_run_stopped_midway_is_recovered_as_interrupted_and_rolled_back(
        tmp_path: Path) -> None:
    calls = []

    def die_on_third(rel: str) -> None:
        calls.append(rel)
        if len(calls) == 3:
            raise Killed

    w = World(tmp_path, before_remove=die_on_third)
    before = w.state()
    wf = w.workflow("tidy", WORKFLOW.replace('kind = "snapshot"', 'kind = "tuning"\n'
                                             'profile = "wftest"', 1))
    prepared = w.runner.prepare(wf)
    with pytest.raises(Killed):
        w.runner.run(prepared, w.journal, facts=FACTS)
    assert w.state() != before  # tuned, and two items removed
    # a restarted daemon: a new runner over the same records
    fresh = WorkflowRunner(RunStore(w.runs), w.rig.engine, w.tuning, w.rig.snapshots)
    (rec,) = fresh.recover()
    assert rec.state == "interrupted"
    # what `osectl recovery list` shows a rescue shell: the executions to roll back
    from osectl.recovery import _workflow_runs
    (listed,) = _workflow_runs(tmp_path)
    assert listed["id"] == rec.id and listed["executions"] == [rec.steps[1].execution]
    assert [s.state for s in rec.steps] == ["done", "failed"]
    assert rec.steps[1].execution is not None
    fresh.rollback(rec.id, w.journal, facts=FACTS)
    assert w.state() == before
    assert fresh.get_run(rec.id).state == "rolled_back"


def test_cancel_between_steps_ends_the_run_as_cancelled(tmp_path: Path) -> None:
    from oseprovd.errors import Cancelled

    w = World(tmp_path)
    before = w.state()
    checks = []

    def cancel_at_tuning() -> None:
        checks.append(1)
        if len(checks) == 1:
            return
        raise Cancelled("cancelled")

    wf = w.workflow("tidy", WORKFLOW.replace('kind = "snapshot"', 'kind = "tuning"\n'
                                             'profile = "wftest"', 1))
    with pytest.raises(Cancelled):
        w.runner.run(w.runner.prepare(wf), w.journal, facts=FACTS,
                     check_cancelled=cancel_at_tuning)
    (record,) = w.runner.list_runs()
    assert record.state == "failed"
    assert record.steps[0].state == "done"
    assert w.knob("vm/swappiness") == "10"
    w.runner.rollback(record.id, w.journal, facts=FACTS)
    assert w.state() == before


def test_rollback_puts_back_the_tuning_profile_active_before(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.tuning.apply("wfbase", FACTS)
    assert w.knob("vm/swappiness") == "30"
    before = w.state()
    wf = w.workflow("tune", '[[step]]\nkind = "tuning"\nprofile = "wftest"\n')
    record = w.runner.run(w.runner.prepare(wf), w.journal, facts=FACTS)
    assert record.steps[0].tuning_previous == "wfbase"
    assert w.knob("vm/swappiness") == "10" and w.knob("vm/dirty_ratio") == "33"
    w.runner.rollback(record.id, w.journal, facts=FACTS)
    assert w.knob("vm/swappiness") == "30" and w.knob("vm/dirty_ratio") == "25"
    assert w.state() == before
    assert w.tuning.active_profile == "wfbase"
