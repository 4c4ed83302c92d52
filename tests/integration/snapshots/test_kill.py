"""A rollback killed with SIGKILL at step boundaries ends consistent after recover():
the live tree is exactly the state before the rollback or exactly the snapshot, no
temporary subvolume is left, and the records match what is on disk."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from oseprovd.snapshots.journal import read_journal
from oseprovd.snapshots.models import SnapshotConfig
from tests.harness import oddtree
from tests.harness.components import REPO_ROOT
from tests.harness.loopfs import loop_fs
from tests.harness.treemanifest import differences, manifest
from tests.integration.snapshots.conftest import btrfs_cli, make_engine

pytestmark = [pytest.mark.root, pytest.mark.slow]

CHILD = Path(__file__).with_name("kill_child.py")


def _run_child(configs: list[SnapshotConfig], db: Path, journal: Path, snapshot: str,
               kill_at: int, when: str,
               undo: list[str] | None = None,
               recover: bool = False,
               kill_rename: int = 0) -> subprocess.CompletedProcess[str]:
    spec = {"configs": [c.model_dump(mode="json") for c in configs], "db": str(db),
            "journal": str(journal), "snapshot": snapshot, "kill_at": kill_at,
            "when": when, "undo": undo, "recover": recover, "kill_rename": kill_rename}
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, str(CHILD), json.dumps(spec)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def _subvolumes(mnt: Path) -> list[str]:
    out = btrfs_cli("subvolume", "list", "--", str(mnt))
    return [line.split(" path ", 1)[1] for line in out.splitlines() if " path " in line]


def _points(total: int, runs: int, rng: random.Random) -> list[tuple[int, str]]:
    every = [(n, w) for n in range(1, total + 1) for w in ("before", "after")]
    return every + [rng.choice(every) for _ in range(max(0, runs - len(every)))]


def _check_btrfs_run(tmp_path: Path, mnt: Path, i: int, kill_at: int, when: str,
                     root: bool) -> str:
    name = f"d{i}"
    btrfs_cli("subvolume", "create", "--", str(mnt / name))
    cfg = SnapshotConfig(name=name, backend="btrfs", path=mnt / name,
                         snapshot_dir=mnt / f".snap-{name}", root_subvolume=root)
    engine, journal, _repo, db = make_engine(tmp_path, [cfg], tag=name)
    oddtree.build(cfg.path)
    before = manifest(cfg.path)
    rec = engine.create_snapshot(name)
    oddtree.change(cfg.path)
    after = manifest(cfg.path)
    default_before = btrfs_cli("subvolume", "get-default", str(mnt)).split()[1]
    parent_before = os.stat(mnt)
    names_before = sorted(os.listdir(mnt))

    child = _run_child([cfg], db, journal.path, rec.id, kill_at, when)
    assert child.returncode in (0, -9), child.stderr

    engine2, _journal2, repo2, _ = make_engine(tmp_path, [cfg], tag=name)
    outcomes = engine2.recover(read_journal(journal.path))
    assert engine2.recover(read_journal(journal.path)) == []  # nothing left to do
    where = f"run {i} ({'root' if root else 'swap'}) killed {when} step {kill_at}: "

    subvols = _subvolumes(mnt)
    assert not [s for s in subvols if "ose-rollback" in s], where + str(subvols)
    parent_now = os.stat(mnt)  # the directory holding the subvolume looks untouched
    assert parent_now.st_mtime_ns == parent_before.st_mtime_ns, where
    assert sorted(os.listdir(mnt)) == names_before, where
    recorded = {r.id for r in repo2.list(name)}
    on_disk = {s.split("/", 1)[1] for s in subvols if s.startswith(f".snap-{name}/")}
    if root:
        rw = {s for s in on_disk if s.startswith("rw-")}
        on_disk -= rw
        default_now = btrfs_cli("subvolume", "get-default", str(mnt)).split()[1]
        assert len(rw) <= 1, where + str(rw)
        assert (default_now != default_before) == bool(rw), where
        assert differences(after, manifest(cfg.path)) == [], where
        if rw:
            clone = cfg.snapshot_dir / rw.pop()
            assert differences(before, manifest(clone)) == [], where
            state = "finished"
        else:
            state = "reverted"
    else:
        live = manifest(cfg.path)
        if differences(before, live) == []:
            state = "finished"
            prev = engine2.get_snapshot(f"{name}-2")
            assert prev.important
            assert differences(after, manifest(cfg.snapshot_dir / prev.id)) == [], where
        else:
            assert differences(after, live) == [], where + "neither state"
            state = "reverted"
    assert recorded == on_disk, where + f"{recorded} != {on_disk}"
    for r in repo2.list(name):
        engine2.backends["btrfs"].verify(cfg, r)
    if child.returncode == 0:
        assert state == "finished" and outcomes == []
    return state


def test_btrfs_rollback_killed_anywhere(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("OSE_KILL_SEED", "4")))
    with loop_fs(tmp_path, "btrfs", size_mb=600) as mnt:
        states = []
        # swap rollback: 7 journal entries; root rollback: 5
        runs = [(p, False) for p in _points(7, 16, rng)] + [
            (p, True) for p in _points(5, 10, rng)]
        for i, ((kill_at, when), root) in enumerate(runs):
            states.append(_check_btrfs_run(tmp_path, mnt, i, kill_at, when, root))
        assert len(runs) >= 20
        assert "finished" in states and "reverted" in states


def test_copy_rollback_killed_anywhere(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("OSE_KILL_SEED", "4")))
    from tests.integration.snapshots.test_copy import TOUCHED

    with loop_fs(tmp_path, "ext4") as mnt:
        for i in range(8):
            cfg = SnapshotConfig(name=f"c{i}", backend="copy", path=mnt / f"tree{i}",
                                 snapshot_dir=mnt / f".store{i}")
            engine, journal, _repo, db = make_engine(tmp_path, [cfg], tag=cfg.name)
            oddtree.build(cfg.path)
            before = manifest(cfg.path)
            rec = engine.create_snapshot(cfg.name)
            engine.will_change(rec.id, TOUCHED)
            oddtree.change(cfg.path)
            after = manifest(cfg.path)
            n_steps = 40  # a copy restore journals one entry per saved path
            kill_at = rng.randint(1, n_steps) if i else 1
            when = rng.choice(["before", "after"]) if i else "before"
            child = _run_child([cfg], db, journal.path, rec.id, kill_at, when)
            assert child.returncode in (0, -9), child.stderr
            if i % 2:  # the daemon is killed again while recovering
                again = _run_child([cfg], db, journal.path, rec.id, rng.randint(1, n_steps),
                                   rng.choice(["before", "after"]), recover=True)
                assert again.returncode in (0, -9), again.stderr
            engine2, *_ = make_engine(tmp_path, [cfg], tag=cfg.name)
            engine2.recover(read_journal(journal.path))
            expected = after if (kill_at, when) == (1, "before") else before
            assert differences(expected, manifest(cfg.path)) == [], f"run {i} at {kill_at}"
            leftovers = [p for p in cfg.path.rglob(".ose-tmp-*")]
            assert leftovers == []


def test_btrfs_undo_killed_anywhere(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("OSE_KILL_SEED", "4")))
    paths = [".", "plain.txt", "sub dir", os.fsdecode(oddtree.ODD), "created dir"]
    with loop_fs(tmp_path, "btrfs") as mnt:
        for i in range(8):
            name = f"u{i}"
            btrfs_cli("subvolume", "create", "--", str(mnt / name))
            cfg = SnapshotConfig(name=name, backend="btrfs", path=mnt / name,
                                 snapshot_dir=mnt / f".snap-{name}")
            engine, journal, _, db = make_engine(tmp_path, [cfg], tag=name)
            oddtree.build(cfg.path)
            before = manifest(cfg.path)
            rec = engine.create_snapshot(name)
            oddtree.change(cfg.path)
            after = manifest(cfg.path)
            # undo.begin, one note per path, the batch's commit note, undo.done
            kill_at = rng.randint(1, len(paths) + 3) if i else 1
            when = rng.choice(["before", "after"]) if i else "before"
            order = rng.sample(paths, len(paths))
            child = _run_child([cfg], db, journal.path, rec.id, kill_at, when, undo=order)
            assert child.returncode in (0, -9), child.stderr
            if i % 2:  # the daemon is killed again while recovering
                again = _run_child([cfg], db, journal.path, rec.id,
                                   rng.randint(1, len(paths) + 3),
                                   rng.choice(["before", "after"]), recover=True)
                assert again.returncode in (0, -9), again.stderr
            engine2, *_ = make_engine(tmp_path, [cfg], tag=name)
            engine2.recover(read_journal(journal.path))
            # killed before the undo was journaled: nothing happened; else it is finished
            expected = after if (kill_at, when) == (1, "before") else before
            assert differences(expected, manifest(cfg.path)) == [], f"run {i} at {kill_at}"
            assert not list(cfg.path.rglob(".ose-tmp-*"))


def test_btrfs_undo_killed_inside_its_renames(tmp_path: Path) -> None:
    """An undo holds its renames back until its temps are durable, then renames them all:
    killed between two of those renames, recovery still finishes it."""
    rng = random.Random(int(os.environ.get("OSE_KILL_SEED", "4")))
    paths = ["plain.txt", "sub dir", os.fsdecode(oddtree.ODD), "created dir", "."]
    killed = 0
    with loop_fs(tmp_path, "btrfs") as mnt:
        for i, nth in enumerate([1, 2, 3, *rng.sample(range(4, 16), 3)]):
            name = f"r{i}"
            btrfs_cli("subvolume", "create", "--", str(mnt / name))
            cfg = SnapshotConfig(name=name, backend="btrfs", path=mnt / name,
                                 snapshot_dir=mnt / f".snap-{name}")
            engine, journal, _, db = make_engine(tmp_path, [cfg], tag=name)
            oddtree.build(cfg.path)
            before = manifest(cfg.path)
            rec = engine.create_snapshot(name)
            oddtree.change(cfg.path)
            child = _run_child([cfg], db, journal.path, rec.id, 0, "before",
                               undo=rng.sample(paths, len(paths)), kill_rename=nth)
            assert child.returncode in (0, -9), child.stderr
            killed += child.returncode == -9
            steps = [s for s, _ in read_journal(journal.path)]
            if child.returncode == -9:  # killed inside the batch: after its commit note
                assert steps[-1] == "btrfs.undo.commit", steps
            engine2, *_ = make_engine(tmp_path, [cfg], tag=name)
            outcomes = engine2.recover(read_journal(journal.path))
            assert [o.outcome for o in outcomes] == (["finished"] if child.returncode else [])
            assert differences(before, manifest(cfg.path)) == [], f"run {i}, rename {nth}"
            assert not list(cfg.path.rglob(".ose-tmp-*"))
    assert killed >= 3  # the kills did land inside batches
