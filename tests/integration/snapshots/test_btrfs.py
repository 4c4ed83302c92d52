"""btrfs backend on a real btrfs loop image: every result is checked against a manifest
taken before the change with independent code (tests/harness/treemanifest.py), and
against the btrfs CLI for subvolume facts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from oseprovd.errors import InvalidArguments
from oseprovd.snapshots.errors import (
    InvalidSnapshotId,
    NotRecorded,
    SnapshotNotFound,
    SubvolumeBusy,
    UnsafeSnapshotPath,
)
from oseprovd.snapshots.models import SnapshotRecord
from tests.harness import oddtree
from tests.harness.loopfs import umount
from tests.harness.treemanifest import changed_paths, differences, manifest
from tests.integration.snapshots.conftest import Rig, btrfs_cli, btrfs_rig

pytestmark = pytest.mark.root


def _subvolumes(mnt: Path) -> set[str]:
    out = btrfs_cli("subvolume", "list", "-o", "--", str(mnt))
    return {line.split(" path ", 1)[1] for line in out.splitlines() if " path " in line}


def _subvol_id(path: Path) -> int:
    out = btrfs_cli("subvolume", "show", "--", str(path))
    for line in out.splitlines():
        if line.strip().startswith("Subvolume ID:"):
            return int(line.split(":")[1])
    raise AssertionError(out)


def test_snapshot_is_read_only_and_recorded(btrfs: Rig) -> None:
    oddtree.build(btrfs.live)
    rec = btrfs.engine.create_snapshot("data", "first", {"k": "v"}, job_id=7)
    assert rec.id == "data-1" and rec.uuid
    snap = btrfs.config.snapshot_dir / rec.id
    assert btrfs_cli("property", "get", "-ts", "--", str(snap), "ro").strip() == "ro=true"
    show = btrfs_cli("subvolume", "show", "--", str(snap))
    assert rec.uuid.replace("-", "") in show.replace("-", "")
    st = os.lstat(btrfs.config.snapshot_dir)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o700
    assert btrfs.engine.get_snapshot("data-1") == rec
    assert [r.id for r in btrfs.engine.list_snapshots("data")] == ["data-1"]
    # the snapshot holds the tree exactly
    assert differences(manifest(btrfs.live), manifest(snap)) == []


def test_undo_whole_tree_restores_everything(btrfs: Rig) -> None:
    oddtree.build(btrfs.live)
    before = manifest(btrfs.live)
    rec = btrfs.engine.create_snapshot("data", "before change")
    oddtree.change(btrfs.live)
    after = manifest(btrfs.live)
    assert changed_paths(before, after)
    around = manifest(btrfs.mnt, exclude=(b"data", b".snap-data"))
    result = btrfs.engine.undo(rec.id, ["."])
    assert result.changed > 0
    assert differences(before, manifest(btrfs.live)) == []
    assert differences(around, manifest(btrfs.mnt, exclude=(b"data", b".snap-data"))) == []


def test_undo_some_paths_changes_only_those(btrfs: Rig) -> None:
    oddtree.build(btrfs.live)
    before = manifest(btrfs.live)
    rec = btrfs.engine.create_snapshot("data")
    oddtree.change(btrfs.live)
    after = manifest(btrfs.live)
    btrfs.engine.undo(rec.id, ["plain.txt", "sub dir", "with space.txt",
                               os.fsdecode(oddtree.ODD), "created dir"])
    now = manifest(btrfs.live)
    restored = {b"plain.txt", b"with space.txt", oddtree.ODD, b"created dir"}
    for path in set(before["entries"]) | set(after["entries"]):
        top = path.split(b"/")[0]
        if top in restored or top == b"sub dir":
            assert now["entries"].get(path) == before["entries"].get(path), path
        elif path != b".":
            assert now["entries"].get(path) == after["entries"].get(path), path
    # the root dir's times were not touched by the undo
    assert now["entries"][b"."] == after["entries"][b"."]
    # "sub dir/hl_b" is a hard link of hl_a and hl_c again (they were not undone, but
    # still hold the snapshot's inode)
    assert now["links"] == before["links"]


def test_diff_matches_independent_comparison(btrfs: Rig) -> None:
    oddtree.build(btrfs.live)
    before = manifest(btrfs.live)
    rec = btrfs.engine.create_snapshot("data")
    oddtree.change(btrfs.live)
    after = manifest(btrfs.live)
    expected = {p for p in changed_paths(before, after) if p != b"."}
    got = {os.fsencode(e.path): e.change for e in btrfs.engine.diff(rec.id)}
    assert set(got) == expected
    assert got[b"created by op"] == "created"
    assert got[b"with space.txt"] == "deleted"
    assert got[b"plain.txt"] == "content"
    assert got[b"setuid"] == "metadata"
    # snapshot to snapshot gives the same answer
    rec2 = btrfs.engine.create_snapshot("data")
    assert {os.fsencode(e.path) for e in btrfs.engine.diff(rec.id, rec2.id)} == expected
    assert list(btrfs.engine.diff(rec2.id)) == []


def test_rollback_swaps_subvolume_and_keeps_previous(btrfs: Rig) -> None:
    oddtree.build(btrfs.live)
    # beside it: a sibling subvolume and plain files, which nothing may touch
    btrfs_cli("subvolume", "create", "--", str(btrfs.mnt / "sibling"))
    oddtree.build(btrfs.mnt / "sibling")
    oddtree.build(btrfs.mnt / "plain dir")
    outside = (b"data", b".snap-data")
    before = manifest(btrfs.live)
    rec = btrfs.engine.create_snapshot("data")
    oddtree.change(btrfs.live)
    after = manifest(btrfs.live)
    around = manifest(btrfs.mnt, exclude=outside)
    sibling = manifest(btrfs.mnt / "sibling")
    old_id = _subvol_id(btrfs.live)
    result = btrfs.engine.rollback(rec.id)
    assert not result.reboot_required and result.previous == "data-2"
    assert differences(before, manifest(btrfs.live)) == []
    assert differences(sibling, manifest(btrfs.mnt / "sibling")) == []
    assert differences(around, manifest(btrfs.mnt, exclude=outside)) == []
    assert _subvol_id(btrfs.live) != old_id
    prev = btrfs.config.snapshot_dir / "data-2"
    assert _subvol_id(prev) == old_id
    assert btrfs.engine.get_snapshot("data-2").important
    # the rollback can itself be rolled back
    btrfs.engine.rollback("data-2")
    assert differences(after, manifest(btrfs.live)) == []
    # no temporary subvolume is left over
    assert not [s for s in _subvolumes(btrfs.mnt) if "ose-rollback" in s]


def test_rollback_refused_while_in_use(btrfs: Rig) -> None:
    oddtree.build(btrfs.live)
    rec = btrfs.engine.create_snapshot("data")
    with open(btrfs.live / "plain.txt", "rb"):
        proc = subprocess.Popen(["sleep", "30"], cwd=btrfs.live)
        try:
            with pytest.raises(SubvolumeBusy):
                btrfs.engine.rollback(rec.id)
        finally:
            proc.kill()
            proc.wait()
    before = {s for s in _subvolumes(btrfs.mnt)}
    assert not [s for s in before if "ose-rollback" in s]


def test_root_rollback_sets_default_subvolume(tmp_path: Path, btrfs_mnt: Path) -> None:
    rig = btrfs_rig(tmp_path, btrfs_mnt, name="root", root_subvolume=True)
    oddtree.build(rig.live)
    before = manifest(rig.live)
    rec = rig.engine.create_snapshot("root")
    oddtree.change(rig.live)
    after = manifest(rig.live)
    result = rig.engine.rollback(rec.id)
    assert result.reboot_required and result.new_default_subvolume
    out = btrfs_cli("subvolume", "get-default", str(btrfs_mnt))  # takes no "--"
    assert out.split()[1] == str(result.new_default_subvolume)
    # the running root is untouched until the reboot
    assert differences(after, manifest(rig.live)) == []
    # what a reboot would mount: the default subvolume
    image = next(tmp_path.glob("btrfs.img"))
    dev = subprocess.run(["findmnt", "-n", "-o", "SOURCE", "--", str(btrfs_mnt)],
                         check=True, capture_output=True, text=True).stdout.strip()
    assert image.exists() and dev
    second = tmp_path / "default-mnt"
    second.mkdir()
    subprocess.run(["mount", "-o", "noatime", "--", dev, str(second)], check=True)
    try:
        assert differences(before, manifest(second)) == []
    finally:
        umount(second)


def test_refuses_bad_ids(btrfs: Rig) -> None:
    for bad in ("../../x", "-y", "data-1/../../etc", "", "data-0", "DATA-1", "data-1\n"):
        with pytest.raises(InvalidSnapshotId):
            btrfs.engine.get_snapshot(bad)
        with pytest.raises(InvalidSnapshotId):
            btrfs.engine.rollback(bad)
        with pytest.raises(InvalidSnapshotId):
            btrfs.engine.delete_snapshots([bad])
        with pytest.raises(InvalidSnapshotId):
            btrfs.engine.undo(bad, ["."])


def test_refuses_user_made_subvolume(btrfs: Rig) -> None:
    oddtree.build(btrfs.live)
    btrfs.engine.create_snapshot("data")  # makes the snapshot dir
    user_made = btrfs.config.snapshot_dir / "data-5"
    btrfs_cli("subvolume", "snapshot", "-r", "--", str(btrfs.live), str(user_made))
    # not recorded: unknown
    with pytest.raises(SnapshotNotFound):
        btrfs.engine.rollback("data-5")
    with pytest.raises(SnapshotNotFound):
        btrfs.engine.delete_snapshots(["data-5"])
    # a record that doesn't match what is on disk (forged, or the subvolume swapped)
    forged = btrfs.engine.get_snapshot("data-1").model_copy(
        update={"id": "data-5", "number": 5})
    btrfs.repo.add(forged)
    for call in (lambda: btrfs.engine.rollback("data-5"),
                 lambda: btrfs.engine.delete_snapshots(["data-5"]),
                 lambda: btrfs.engine.undo("data-5", ["."]),
                 lambda: list(btrfs.engine.diff("data-5"))):
        with pytest.raises(NotRecorded):
            call()
    assert user_made.is_dir()
    # a recorded snapshot replaced by a user's subvolume of the same name
    btrfs_cli("subvolume", "delete", "--", str(btrfs.config.snapshot_dir / "data-1"))
    btrfs_cli("subvolume", "snapshot", "-r", "--", str(btrfs.live),
              str(btrfs.config.snapshot_dir / "data-1"))
    with pytest.raises(NotRecorded):
        btrfs.engine.rollback("data-1")


def test_refuses_symlink_escapes(btrfs: Rig, tmp_path: Path) -> None:
    oddtree.build(btrfs.live)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    rec = btrfs.engine.create_snapshot("data")
    # a snapshot name that is a symlink to somewhere else
    os.symlink(outside, btrfs.config.snapshot_dir / "data-9")
    btrfs.repo.add(rec.model_copy(update={"id": "data-9", "number": 9}))
    with pytest.raises(UnsafeSnapshotPath):
        btrfs.engine.rollback("data-9")
    with pytest.raises(UnsafeSnapshotPath):
        btrfs.engine.undo("data-9", ["."])
    # a live path that leads through a symlink out of the tree
    (btrfs.live / "sub dir" / "x").write_text("x")
    btrfs.engine.create_snapshot("data")  # data-10 has sub dir/x
    os.rename(btrfs.live / "sub dir", btrfs.live / "real sub")
    os.symlink(outside, btrfs.live / "sub dir")
    with pytest.raises(UnsafeSnapshotPath):
        btrfs.engine.undo("data-10", ["sub dir/x"])
    with pytest.raises(InvalidArguments):
        btrfs.engine.undo("data-10", ["../outside/victim"])
    assert sorted(os.listdir(outside)) == ["victim"]
    assert (outside / "victim").read_text() == "keep me"


def test_delete_and_pre_post(btrfs: Rig) -> None:
    oddtree.build(btrfs.live)
    with btrfs.engine.pre_post("data", "apply profile", job_id=3) as pair:
        pair.will_change(["plain.txt"])
        (btrfs.live / "plain.txt").write_bytes(b"by the job\n")
    assert pair.post is not None and pair.post.pre_id == pair.pre.id
    assert pair.pre.important and pair.pre.kind == "pre" and pair.post.kind == "post"
    assert [(e.path, e.change) for e in btrfs.engine.diff(pair.pre.id, pair.post.id)] == [
        ("plain.txt", "content")]
    btrfs.engine.delete_snapshots([pair.pre.id, pair.post.id])
    assert btrfs.engine.list_snapshots("data") == []
    assert not (btrfs.config.snapshot_dir / pair.pre.id).exists()
    assert not [s for s in _subvolumes(btrfs.mnt) if s.startswith(".snap-data/")]


def test_record_type_is_pydantic(btrfs: Rig) -> None:
    rec = btrfs.engine.create_snapshot("data")
    assert isinstance(rec, SnapshotRecord)
    assert SnapshotRecord.model_validate_json(rec.model_dump_json()) == rec


def test_snapshot_dir_inside_the_subvolume(tmp_path: Path, btrfs_mnt: Path) -> None:
    """Like a root config with /.ose-snapshots: the snapshots are nested subvolumes of
    the live one; undo, diff and the copies leave them alone."""
    from oseprovd.snapshots.models import SnapshotConfig
    from tests.integration.snapshots.conftest import make_engine

    btrfs_cli("subvolume", "create", "--", str(btrfs_mnt / "r"))
    cfg = SnapshotConfig(name="r", backend="btrfs", path=btrfs_mnt / "r",
                         snapshot_dir=btrfs_mnt / "r" / ".ose-snapshots")
    engine, *_ = make_engine(tmp_path, [cfg], tag="r")
    oddtree.build(cfg.path)
    s1 = engine.create_snapshot("r")  # (makes .ose-snapshots first: the root's mtime)
    before = manifest(cfg.path, exclude=(b".ose-snapshots",))
    oddtree.change(cfg.path)
    s2 = engine.create_snapshot("r")
    assert not any(e.path.startswith(".ose-snapshots") for e in engine.diff(s1.id))
    engine.undo(s1.id, ["."])
    assert differences(before, manifest(cfg.path, exclude=(b".ose-snapshots",))) == []
    for rec in (s1, s2):
        engine.backends["btrfs"].verify(cfg, rec)
    from oseprovd.snapshots.errors import RollbackNotPossible

    with pytest.raises(RollbackNotPossible):
        engine.rollback(s1.id)


def test_taken_place_is_skipped_not_reused(btrfs: Rig) -> None:
    oddtree.build(btrfs.live)
    btrfs.engine.create_snapshot("data")
    squatter = btrfs.config.snapshot_dir / "data-2"
    btrfs_cli("subvolume", "create", "--", str(squatter))
    (squatter / "mine").write_text("user data")
    rec = btrfs.engine.create_snapshot("data")
    assert rec.id == "data-3"
    assert (squatter / "mine").read_text() == "user data"
    assert btrfs.engine.recover(btrfs.journal.entries()) == []
    assert (squatter / "mine").read_text() == "user data"


def test_free_space_limit_deletes_oldest_until_free(btrfs: Rig) -> None:
    """Real space: each snapshot pins 40 MB that the live tree no longer has."""
    from datetime import UTC, datetime, timedelta

    from oseprovd.snapshots.models import Retention

    ids = []
    for _ in range(4):
        (btrfs.live / "blob").write_bytes(os.urandom(40 << 20))
        ids.append(btrfs.engine.create_snapshot("data", cleanup="number").id)
    (btrfs.live / "blob").write_bytes(os.urandom(40 << 20))
    btrfs_cli("filesystem", "sync", str(btrfs.mnt))
    st = os.statvfs(btrfs.mnt)
    free_before = st.f_bavail / st.f_blocks
    # each old snapshot pins 40 MB of 300: asking for ~1.5 snapshots' worth more free
    # space must delete the oldest two, and only them
    limit = free_before + 1.5 * (40 << 20) / (st.f_blocks * st.f_frsize)
    cfg = btrfs.config.model_copy(update={"retention": Retention(
        free_limit=limit, number_min_age=0, number_limit=50)})
    btrfs.engine.configs["data"] = cfg
    btrfs.engine.clock = lambda: datetime.now(UTC) + timedelta(hours=1)
    result = btrfs.engine.cleanup("data")
    st = os.statvfs(btrfs.mnt)
    assert st.f_bavail / st.f_blocks >= limit
    assert list(result.deleted) == ids[:2], (free_before, limit, result)
    left = {r.id for r in btrfs.engine.list_snapshots("data")}
    assert left == set(ids[2:])
    assert not [s for s in _subvolumes(btrfs.mnt) if s.split("/")[-1] in result.deleted]


def _wide_tree(root: Path) -> list[str]:
    """40 directories three levels deep, 32 files each; returns the directories."""
    dirs = []
    for a in range(4):
        for b in range(10):
            d = root / f"a{a}" / f"b{b}" / "c"
            d.mkdir(parents=True)
            (d / "one").write_bytes(b"1" * (a * 10 + b))
            (d / "two").write_bytes(b"2")
            for k in range(30):
                (d / f"p{k}").write_bytes(b"")
            dirs.append(str(d.relative_to(root)))
    return dirs


def test_undo_whole_tree_walks_only_what_changed(btrfs: Rig,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo of "." against a snapshot of the live subvolume lists only the directories
    that hold something written since the snapshot (btrfs tree search), and still
    restores every kind of change deep down: content, mode, times, an xattr, a removed
    and a created file, a renamed directory, a new hard link."""
    _wide_tree(btrfs.live)
    before = manifest(btrfs.live)
    rec = btrfs.engine.create_snapshot("data", "before")
    live = btrfs.live
    (live / "a0/b1/c/one").write_bytes(b"changed")
    os.chmod(live / "a1/b2/c/two", 0o600)
    os.utime(live / "a2/b3/c/one", ns=(1, 1))
    os.setxattr(live / "a3/b4/c", "user.k", b"v")
    os.unlink(live / "a0/b5/c/two")
    (live / "a1/b6/c/new").write_bytes(b"new")
    os.rename(live / "a2/b7", live / "a2/b7-moved")
    os.link(live / "a3/b8/c/one", live / "a3/b8/c/one-link")
    assert changed_paths(before, manifest(live))
    listed: list[object] = []
    stats = 0
    real_listdir, real_scandir, real_stat = os.listdir, os.scandir, os.stat

    def listdir(path: object = ".") -> list[str]:
        listed.append(path)
        return real_listdir(path)  # type: ignore[arg-type]

    def scandir(path: object = ".") -> object:
        listed.append(path)
        return real_scandir(path)  # type: ignore[arg-type]

    def counting_stat(*a: object, **k: object) -> os.stat_result:
        nonlocal stats
        stats += 1
        return real_stat(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", counting_stat)
    btrfs.engine.undo(rec.id, ["."])
    monkeypatch.setattr(os, "listdir", real_listdir)
    monkeypatch.setattr(os, "scandir", real_scandir)
    monkeypatch.setattr(os, "stat", real_stat)
    assert differences(before, manifest(live)) == []
    # 40 leaf directories, 4 + 40 above them: a full walk lists each on both sides
    # (168); the changed ones are 8 leaves, their parents and grandparents
    assert len(listed) < 100, len(listed)
    # and in the directories it lists, what kept its inode unwritten is not stat'ed
    # (the 8 changed leaves hold 8 x 30 untouched files: stat'ed, that is 480 more)
    assert stats < 300, stats


def test_undo_from_a_snapshot_of_another_subvolume_walks_everything(btrfs: Rig) -> None:
    """After a rollback the live subvolume is a copy of the snapshot: the snapshot kept
    of the old live tree is not a snapshot of this one, so its generations say nothing
    here and undo from it compares everything."""
    _wide_tree(btrfs.live)
    rec = btrfs.engine.create_snapshot("data", "first")
    (btrfs.live / "a0/b0/c/one").write_bytes(b"after first")
    second = manifest(btrfs.live)
    btrfs.engine.rollback(rec.id)  # what was live is kept as a snapshot
    previous = [r for r in btrfs.engine.list_snapshots("data") if r.id != rec.id][-1]
    assert (btrfs.live / "a0/b0/c/one").read_bytes() == b"1" * 0
    btrfs.engine.undo(previous.id, ["."])
    assert differences(second, manifest(btrfs.live)) == []
