"""copy backend (the operation-scoped rollback store) on real ext4 and xfs loop images:
record what an operation will touch, change it, restore, compare with a manifest taken
before (independent code)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from oseprovd.errors import InvalidArguments
from oseprovd.snapshots.errors import NotRecorded, UnsafeSnapshotPath
from oseprovd.snapshots.models import SnapshotConfig
from tests.harness import oddtree
from tests.harness.loopfs import loop_fs
from tests.harness.treemanifest import differences, manifest
from tests.integration.snapshots.conftest import Rig, make_engine

pytestmark = pytest.mark.root

# What oddtree.change touches, as an operation would declare it beforehand.
TOUCHED = ["plain.txt", "with space.txt", os.fsdecode(oddtree.ODD), "created by op",
           "created dir", oddtree.NL, "sub dir", "owned", "link", "sparse.img",
           "setuid", "fifo", "empty"]


@pytest.fixture(params=["ext4", "xfs"])
def copy_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    with loop_fs(tmp_path, request.param) as mnt:
        cfg = SnapshotConfig(name="etc", backend="copy", path=mnt / "tree",
                             snapshot_dir=mnt / ".ose-store")
        engine, journal, repo, db = make_engine(tmp_path, [cfg])
        yield Rig(engine, cfg, journal, repo, mnt, db)


def test_restore_everything_recorded(copy_rig: Rig) -> None:
    oddtree.build(copy_rig.live)
    before = manifest(copy_rig.live)
    with copy_rig.engine.pre_post("etc", "job") as pair:
        pair.will_change(TOUCHED)
        oddtree.change(copy_rig.live)
    assert pair.post is None  # a store has nothing to say after the job
    assert differences(before, manifest(copy_rig.live))
    result = copy_rig.engine.rollback(pair.pre.id)
    assert not result.reboot_required
    assert differences(before, manifest(copy_rig.live)) == []


def test_undo_one_path_only(copy_rig: Rig) -> None:
    oddtree.build(copy_rig.live)
    before = manifest(copy_rig.live)
    rec = copy_rig.engine.create_snapshot("etc")
    copy_rig.engine.will_change(rec.id, TOUCHED)
    oddtree.change(copy_rig.live)
    after = manifest(copy_rig.live)
    copy_rig.engine.undo(rec.id, ["plain.txt"])
    now = manifest(copy_rig.live)
    assert now["entries"][b"plain.txt"] == before["entries"][b"plain.txt"]
    for path, entry in after["entries"].items():
        if path not in (b"plain.txt", b"."):
            assert now["entries"].get(path) == entry, path


def test_store_cost_follows_the_change(copy_rig: Rig) -> None:
    big = copy_rig.live / "big"
    big.mkdir(parents=True)
    for i in range(2000):
        (big / f"f{i}").write_bytes(b"x" * 100)
    (copy_rig.live / "one.conf").write_bytes(b"a=1\n")
    before = manifest(copy_rig.live)
    rec = copy_rig.engine.create_snapshot("etc")
    copy_rig.engine.will_change(rec.id, ["one.conf", "two.conf"])
    store = copy_rig.config.snapshot_dir / rec.id / "tree"
    saved = [p for p in store.rglob("*")]
    assert [p.name for p in saved] == ["one.conf"]
    (copy_rig.live / "one.conf").write_bytes(b"a=2\n")
    (copy_rig.live / "two.conf").write_bytes(b"new\n")
    diff = {(e.path, e.change) for e in copy_rig.engine.diff(rec.id)}
    assert diff == {("one.conf", "content"), ("two.conf", "created"), ("", "metadata")}
    copy_rig.engine.rollback(rec.id)
    assert differences(before, manifest(copy_rig.live)) == []


def test_whole_path_option_and_created_files(tmp_path: Path) -> None:
    with loop_fs(tmp_path, "ext4") as mnt:
        cfg = SnapshotConfig(name="etc", backend="copy", path=mnt / "tree",
                             snapshot_dir=mnt / ".ose-store", whole_paths=("sub dir",))
        engine, *_ = make_engine(tmp_path, [cfg])
        oddtree.build(cfg.path)
        before = manifest(cfg.path)
        rec = engine.create_snapshot("etc")
        (cfg.path / "sub dir" / "added").write_text("op made me")
        (cfg.path / "sub dir" / "hl_b").write_text("changed")
        engine.undo(rec.id, ["sub dir"])
        assert differences(before, manifest(cfg.path)) == []


def test_refusals(copy_rig: Rig, tmp_path: Path) -> None:
    oddtree.build(copy_rig.live)
    rec = copy_rig.engine.create_snapshot("etc")
    with pytest.raises(InvalidArguments):
        copy_rig.engine.will_change(rec.id, ["../outside"])
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, copy_rig.live / "escape")
    with pytest.raises(UnsafeSnapshotPath):
        copy_rig.engine.will_change(rec.id, ["escape/x"])
    # a store directory that isn't the one recorded (token differs)
    other = copy_rig.config.snapshot_dir / "etc-7"
    other.mkdir(mode=0o700)
    (other / "tree").mkdir()
    (other / "token").write_text('{"token": "0000"}\n')
    copy_rig.repo.add(rec.model_copy(update={"id": "etc-7", "number": 7}))
    with pytest.raises(NotRecorded):
        copy_rig.engine.rollback("etc-7")
    assert os.listdir(outside) == []


def test_whole_tree_with_store_inside(tmp_path: Path) -> None:
    with loop_fs(tmp_path, "xfs") as mnt:
        cfg = SnapshotConfig(name="all", backend="copy", path=mnt / "tree",
                             snapshot_dir=mnt / "tree" / ".store", whole_paths=(".",))
        engine, *_ = make_engine(tmp_path, [cfg])
        oddtree.build(cfg.path)
        engine.backends["copy"].prepare(cfg)
        before = manifest(cfg.path, exclude=(b".store",))
        rec = engine.create_snapshot("all")
        oddtree.change(cfg.path)
        assert not any(e.path.startswith(".store") for e in engine.diff(rec.id))
        with pytest.raises(InvalidArguments):
            engine.will_change(rec.id, [".store/x"])
        engine.rollback(rec.id)
        assert differences(before, manifest(cfg.path, exclude=(b".store",))) == []


def test_entries_others_add_beside_a_saved_path_stay(copy_rig: Rig) -> None:
    oddtree.build(copy_rig.live)
    rec = copy_rig.engine.create_snapshot("etc")
    copy_rig.engine.will_change(rec.id, ["sub dir/nested/deep.bin", "plain.txt"])
    (copy_rig.live / "plain.txt").write_text("changed")
    (copy_rig.live / "someone else's").write_text("not the operation's")
    (copy_rig.live / "sub dir" / "nested" / "theirs").write_text("also not")
    copy_rig.engine.rollback(rec.id)
    assert (copy_rig.live / "someone else's").read_text() == "not the operation's"
    assert (copy_rig.live / "sub dir" / "nested" / "theirs").exists()
    assert (copy_rig.live / "plain.txt").read_bytes() == b"hello\n" * 100
