"""The light profile on a lived-in sandbox root: plan, execute, roll back.

Ground truth is what the sandbox planted (livedin.py's lists) and an lstat walk / a
sha256+lstat+xattr manifest taken by test code, never the engine's own report.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oseprovd.errors import Cancelled, InvalidArguments, NotApplicable
from oseprovd.reset.errors import DigestMismatch
from oseprovd.reset.models import ExecuteOptions, Selection
from oseprovd.snapshots.journal import read_journal
from tests.harness import treemanifest
from tests.unit.reset.livedin import all_paths, make_rig, warm_atimes

LIGHT = Selection(profile="light")


def _manifest(root: Path) -> dict[str, object]:
    # the state dir changes (plans, executions): everything else must be exact
    return treemanifest.manifest(root, exclude=(b"var/lib/ose",))


def _stable_manifest(root: Path) -> dict[str, object]:
    """Taken twice: the first read of a file moves its atime (relatime), the second
    doesn't, so the second is what a later comparison must see again."""
    warm_atimes(root)
    return _manifest(root)


def test_light_plan_is_exactly_the_planted_candidates(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    plan = rig.engine.preview(LIGHT)
    items = rig.engine.plan_items(plan.id, 0, 10000)
    assert {i.path for i in items} == rig.tree.light_removes
    assert plan.item_count == len(rig.tree.light_removes)
    # totals agree with an independent lstat sum
    expect = sum(os.lstat(rig.root / p).st_blocks * 512 for p in rig.tree.light_removes)
    assert plan.analysis.totals.bytes == expect
    assert plan.analysis.by_risk["safe"].count == plan.item_count
    assert plan.analysis.baseline_source == "distribution"
    assert any("no baseline was captured" in n for n in plan.analysis.notes)
    # the apt-owned partial/ dir is kept, and said so
    assert plan.analysis.kept_owned_by_package >= 1
    by_path = {i.path: i for i in items}
    assert by_path["home/alice/.cache/top-level-file"].owner == "alice"
    assert by_path["home/alice/.cache/top-level-file"].cls == "cache"
    assert by_path["var/log/syslog.1"].cls == "log"
    assert by_path["var/tmp/build.o"].cls == "temp"
    assert "rule" in by_path["var/tmp/build.o"].reason
    # pages: concatenated pages are the whole plan, in path order
    pages = [p for off in range(0, plan.item_count, 7)
             for p in rig.engine.plan_items(plan.id, off, 7)]
    assert [p.path for p in pages] == [i.path for i in items]
    assert [p.path.encode() for p in pages] == sorted(p.path.encode() for p in pages)


def test_analyze_matches_preview_and_parallel_matches_serial(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    a = rig.engine.analyze(LIGHT)
    plan = rig.engine.preview(LIGHT)
    assert a.totals == plan.analysis.totals
    par = make_rig(tmp_path / "p", workers=2, build_tree=False, root=rig.root)
    try:
        for sel in (LIGHT, Selection(profile="medium", exclude_packages=("*",)),
                    Selection(profile="nuclear", exclude_packages=("*",)),
                    Selection(profile="light", users=("bob",))):
            one = rig.engine.preview(sel)
            two = par.engine.preview(sel)
            assert [(i.path, i.cls, i.risk, i.rule) for i in
                    par.engine.plan_items(two.id, 0, 10000)] == \
                [(i.path, i.cls, i.risk, i.rule) for i in
                 rig.engine.plan_items(one.id, 0, 10000)], sel
            assert two.analysis == one.analysis
    finally:
        par.engine.close()


def test_execute_removes_exactly_the_plan_and_rollback_restores_everything(
        tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    before_paths = all_paths(rig.root)
    before = _stable_manifest(rig.root)
    plan = rig.engine.preview(LIGHT)
    result = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert result.skipped_count == 0, result.skipped
    assert result.removed == len(rig.tree.light_removes)
    assert all_paths(rig.root) == before_paths - rig.tree.light_removes
    for p in rig.tree.keeps:
        assert os.path.lexists(rig.root / p), p
    steps = [s for s, _ in read_journal(rig.journal.path)]
    assert steps[0] == "reset.begin" and steps[-1] == "reset.done"
    assert steps.index("reset.snapshot") < steps.index("reset.saved") < steps.index(
        "reset.delete")
    rb = rig.engine.rollback(result.execution, rig.journal)
    assert rb.snapshot == result.rollback_point
    assert treemanifest.differences(before, _manifest(rig.root)) == []
    assert rig.engine.get_execution(result.execution).state == "rolled_back"
    with pytest.raises(NotApplicable):
        rig.engine.rollback(result.execution, rig.journal)
    # resume says what happened, not "finish it with Rollback" (it was finished)
    with pytest.raises(NotApplicable, match="rolled back already"):
        rig.engine.resume(result.execution, read_journal(rig.journal.path), rig.journal)
    assert treemanifest.differences(before, _manifest(rig.root)) == []


def test_dry_run_changes_nothing_and_leaves_no_journal(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    before = _stable_manifest(rig.root)
    plan = rig.engine.preview(LIGHT)
    result = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(dry_run=True),
                                rig.journal)
    assert result.dry_run and result.removed == plan.item_count
    assert result.rollback_point is None
    assert treemanifest.differences(before, _manifest(rig.root)) == []
    assert read_journal(rig.journal.path) == []
    assert rig.snapshots.list_snapshots("root") == []
    assert rig.engine.list_executions() == []


def test_digest_mismatch_is_refused_before_anything(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    before = _stable_manifest(rig.root)
    plan = rig.engine.preview(LIGHT)
    with pytest.raises(DigestMismatch):
        rig.engine.execute(plan.id, "0" * 64, ExecuteOptions(), rig.journal)
    with pytest.raises(InvalidArguments):
        rig.engine.execute("../../etc", plan.digest, ExecuteOptions(), rig.journal)
    assert treemanifest.differences(before, _manifest(rig.root)) == []
    assert rig.snapshots.list_snapshots("root") == []


def test_selection_narrows_and_changes_the_digest(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    full = rig.engine.preview(LIGHT)
    only_alice = rig.engine.preview(Selection(profile="light", users=("alice",)))
    paths = {i.path for i in rig.engine.plan_items(only_alice.id, 0, 10000)}
    assert paths and all(os.lstat(rig.root / p).st_uid == 1000 for p in paths)
    assert only_alice.digest != full.digest
    no_logs = rig.engine.preview(Selection(profile="light", exclude_classes=("log",)))
    assert not any(i.cls == "log" for i in rig.engine.plan_items(no_logs.id, 0, 10000))
    pref = rig.engine.preview(Selection(profile="light", include_paths=("/var/tmp",)))
    assert {i.path for i in rig.engine.plan_items(pref.id, 0, 10000)} == {
        p for p in rig.tree.light_removes if p.startswith("var/tmp/")}
    ex = rig.engine.preview(Selection(profile="light",
                                      exclude_globs=("home/*/.cache/mozilla",)))
    got = {i.path for i in rig.engine.plan_items(ex.id, 0, 10000)}
    assert got == {p for p in rig.tree.light_removes if "/.cache/mozilla" not in p}
    globbed = rig.engine.preview(Selection(profile="light", include_globs=("*.deb",)))
    assert {i.path for i in rig.engine.plan_items(globbed.id, 0, 10000)} == {
        p for p in rig.tree.light_removes if p.endswith(".deb")}
    with pytest.raises(InvalidArguments):
        rig.engine.preview(Selection(profile="light", include_paths=("/home/../etc",)))
    with pytest.raises(InvalidArguments):
        rig.engine.preview(Selection(profile="light", users=("mallory",)))


def test_excluded_subtree_keeps_its_ancestors(tmp_path: Path) -> None:
    """A directory is an item only when everything under it is."""
    rig = make_rig(tmp_path)
    plan = rig.engine.preview(Selection(
        profile="light", exclude_paths=("home/bob/.cache/mozilla/a/b/c.db",)))
    paths = {i.path for i in rig.engine.plan_items(plan.id, 0, 10000)}
    for kept in ("home/bob/.cache/mozilla", "home/bob/.cache/mozilla/a",
                 "home/bob/.cache/mozilla/a/b", "home/bob/.cache/mozilla/a/b/c.db"):
        assert kept not in paths
    before = all_paths(rig.root)
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert r.skipped_count == 0
    assert all_paths(rig.root) == before - paths
    assert (rig.root / "home/bob/.cache/mozilla/a/b/c.db").exists()


def test_cancel_between_batches_leaves_a_resumable_execution(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    before = _stable_manifest(rig.root)
    before_paths = all_paths(rig.root)
    plan = rig.engine.preview(LIGHT)
    seen: list[float] = []

    def cancel() -> None:
        raise Cancelled("cancelled by the test")

    with pytest.raises(Cancelled):
        rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal,
                           check_cancelled=cancel)
    (ex,) = rig.engine.list_executions()
    assert ex.state == "interrupted" and ex.snapshot is not None
    assert all_paths(rig.root) == before_paths  # cancelled before the first batch
    r = rig.engine.resume(ex.id, read_journal(rig.journal.path), rig.journal,
                          progress=lambda f, _t: seen.append(f))
    assert r.removed == plan.item_count and seen[-1] == 1.0
    assert all_paths(rig.root) == before_paths - rig.tree.light_removes
    rig.engine.rollback(ex.id, rig.journal)
    assert treemanifest.differences(before, _manifest(rig.root)) == []


def test_odd_names_are_planned_removed_and_restored(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    cache = os.fsencode(rig.root / "home/alice/.cache")
    odd = [b"latin1-\xe9\xff", b"new\nline", b" lead space", b"-rf", b"*", b"..."]
    for name in odd:
        with open(cache + b"/" + name, "wb") as f:
            f.write(b"x")
        os.chown(cache + b"/" + name, 1000, 1000)
    os.mkdir(cache + b"/dir-\xfe")
    before = _stable_manifest(rig.root)
    plan = rig.engine.preview(LIGHT)
    paths = {os.fsencode(i.path) for i in rig.engine.plan_items(plan.id, 0, 10000)}
    for name in [*odd, b"dir-\xfe"]:
        assert b"home/alice/.cache/" + name in paths
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert r.skipped_count == 0, r.skipped
    assert os.listdir(cache) == [b"pip"]
    rig.engine.rollback(r.execution, rig.journal)
    assert treemanifest.differences(before, _manifest(rig.root)) == []


def test_odd_names_in_reports_survive_the_store(tmp_path: Path) -> None:
    """A skipped non-UTF-8 path and a symlinked non-UTF-8 rule tree end up in the
    stored result and plan notes (pydantic's JSON would refuse them)."""
    rig = make_rig(tmp_path)
    odd = os.fsencode(rig.root / "var/tmp") + b"/odd-\xff"
    with open(odd, "wb") as f:
        f.write(b"x")
    plan = rig.engine.preview(LIGHT)
    with open(odd, "ab") as f:
        f.write(b"changed")
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert [os.fsencode(s.path) for s in r.skipped] == [b"var/tmp/odd-\xff"]
    stored = rig.engine.get_execution(r.execution).result
    assert stored == r
    assert rig.engine.get_plan(plan.id) == plan


def test_a_second_change_while_one_runs_is_busy(tmp_path: Path) -> None:
    import threading

    from oseprovd.errors import Busy

    inside, release = threading.Event(), threading.Event()

    def hook(_rel: str) -> None:
        inside.set()
        release.wait(10)

    rig = make_rig(tmp_path, before_remove=hook)
    plan = rig.engine.preview(LIGHT)
    t = threading.Thread(target=rig.engine.execute,
                         args=(plan.id, plan.digest, ExecuteOptions(), rig.journal))
    t.start()
    try:
        assert inside.wait(10)
        with pytest.raises(Busy):
            rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
        with pytest.raises(Busy):
            rig.engine.rollback(rig.engine.list_executions()[0].id, rig.journal)
    finally:
        release.set()
        t.join()
    assert len(rig.engine.list_executions()) == 1


def test_old_tmp_keeps_files_read_recently(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    p = rig.root / "tmp/old-but-read"
    p.write_text("x")
    month = 30 * 86400
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - month * 10**9))  # old mtime, fresh atime
    plan = rig.engine.preview(LIGHT)
    paths = {i.path for i in rig.engine.plan_items(plan.id, 0, 10000)}
    assert "tmp/old-but-read" not in paths
    assert "tmp/old-download.iso" in paths
