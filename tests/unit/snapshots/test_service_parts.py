"""The pieces the daemon adds around the engine: records and diff pages in the state
store, configs inside the target root, which configs the timer snapshots."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from oseprovd.snapshots.config import default_configs, under_root
from oseprovd.snapshots.models import SnapshotConfig, SnapshotRecord
from oseprovd.snapshots.timer import wants_timeline
from oseprovd.store.db import Store
from oseprovd.store.snapshots import DiffPages, StoreSnapshotRepository


def test_records_round_trip_through_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    repo = StoreSnapshotRepository(store)
    rec = SnapshotRecord(id="root-3", config="root", number=3, backend="btrfs",
                         created=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                         userdata={"k": "v"}, important=True, uuid="u")
    repo.add(rec)
    assert repo.get("root-3") == rec and repo.list("root") == [rec]
    repo.delete("root-3")
    assert repo.get("root-3") is None
    store.close()
    # The table is a migration of the store, read back by plain SQLite.
    conn = sqlite3.connect(tmp_path / "state/oseprovd.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"snapshots", "snapshot_diffs"} <= tables


def test_diff_pages_in_order_and_only_the_newest_kept(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    pages = DiffPages(store, keep=2)
    entries = [(f"f{i:04d}".encode() + b"\xff", "content") for i in range(2500)]
    pages.start(1)
    pages.add(1, 0, entries[:1000])
    pages.add(1, 1000, entries[1000:])
    got: list[tuple[bytes, str]] = []
    while page := pages.page(1, len(got), 700):
        got += page
    assert got == entries
    pages.start(2)
    pages.add(2, 0, entries[:1])
    pages.start(3)  # keeps 2 diffs: this one and diff 2
    assert not pages.exists(1) and pages.exists(2)


def test_configs_are_inside_the_target_root() -> None:
    cfg = SnapshotConfig(name="data", backend="btrfs", path=Path("/srv/data"),
                         snapshot_dir=Path("/srv/.snap"))
    assert under_root(cfg, Path("/")) == cfg
    moved = under_root(cfg, Path("/mnt/x"))
    assert (moved.path, moved.snapshot_dir) == (Path("/mnt/x/srv/data"), Path("/mnt/x/srv/.snap"))
    (default,) = default_configs("", Path("/var/lib/s")).values()
    kept = under_root(default, Path("/mnt/x"), rebase_snapshot_dir=False)
    assert kept.path == Path("/mnt/x") and kept.snapshot_dir == default.snapshot_dir


def test_timer_skips_empty_copy_stores() -> None:
    btrfs = SnapshotConfig(name="a", backend="btrfs", path=Path("/a"), snapshot_dir=Path("/s"))
    copy = SnapshotConfig(name="b", backend="copy", path=Path("/b"), snapshot_dir=Path("/s"))
    whole = copy.model_copy(update={"whole_paths": ("etc",)})
    assert wants_timeline(btrfs) and not wants_timeline(copy) and wants_timeline(whole)
    off = btrfs.model_copy(update={"retention": btrfs.retention.model_copy(
        update={"timeline_create": False})})
    assert not wants_timeline(off)
