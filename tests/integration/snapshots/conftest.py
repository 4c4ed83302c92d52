"""Snapshot engines on real filesystems (loop images made per test)."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.journal import FileJournal
from oseprovd.snapshots.models import SnapshotConfig
from oseprovd.snapshots.repository import SqliteSnapshotRepository, ensure_schema
from tests.harness.components import missing, require
from tests.harness.loopfs import loop_fs


@dataclass
class Rig:
    engine: SnapshotEngine
    config: SnapshotConfig
    journal: FileJournal
    repo: SqliteSnapshotRepository
    mnt: Path
    db: Path

    @property
    def live(self) -> Path:
        return self.config.path


def make_engine(
    tmp_path: Path, configs: list[SnapshotConfig], tag: str = ""
) -> tuple[SnapshotEngine, FileJournal, SqliteSnapshotRepository, Path]:
    from oseprovd.snapshots.btrfs_backend import BtrfsBackend
    from oseprovd.snapshots.copy_backend import CopyBackend

    db = tmp_path / f"state{tag}.db"
    conn = sqlite3.connect(db, isolation_level=None)
    ensure_schema(conn)
    repo = SqliteSnapshotRepository(conn)
    journal = FileJournal(tmp_path / f"journal{tag}.jsonl")
    engine = SnapshotEngine({c.name: c for c in configs}, repo,
                            {"btrfs": BtrfsBackend(), "copy": CopyBackend()}, journal)
    return engine, journal, repo, db


def btrfs_cli(*args: str) -> str:
    return subprocess.run([require("btrfs", "btrfs-progs"), *args], check=True,
                          capture_output=True, text=True).stdout


def btrfs_rig(tmp_path: Path, mnt: Path, name: str = "data",
              root_subvolume: bool = False) -> Rig:
    btrfs_cli("subvolume", "create", "--", str(mnt / name))
    cfg = SnapshotConfig(name=name, backend="btrfs", path=mnt / name,
                         snapshot_dir=mnt / f".snap-{name}", root_subvolume=root_subvolume)
    engine, journal, repo, db = make_engine(tmp_path, [cfg], tag=name)
    return Rig(engine, cfg, journal, repo, mnt, db)


@pytest.fixture
def btrfs_mnt(tmp_path: Path) -> Iterator[Path]:
    from oseprovd.system import btrfs as btrfs_sys

    if not btrfs_sys.available():
        missing("the btrfsutil bindings (python3-btrfsutil or pip btrfsutil<6.14)")
    with loop_fs(tmp_path, "btrfs") as mnt:
        yield mnt


@pytest.fixture
def btrfs(tmp_path: Path, btrfs_mnt: Path) -> Rig:
    return btrfs_rig(tmp_path, btrfs_mnt)
