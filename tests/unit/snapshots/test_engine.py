"""The engine with in-memory collaborators: records, refusals, pre/post, journal."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.errors import ConfigNotFound, NotRecorded, SnapshotNotFound
from oseprovd.snapshots.journal import FileJournal, MemoryJournal, read_journal
from oseprovd.snapshots.models import Retention, SnapshotConfig, SnapshotRecord
from oseprovd.snapshots.repository import SqliteSnapshotRepository, ensure_schema
from tests.unit.snapshots.fakes import FakeBackend, MemoryRepository

CFG = SnapshotConfig(name="root", backend="btrfs", path=Path("/"),
                     snapshot_dir=Path("/.ose-snapshots"),
                     retention=Retention(number_limit=2, number_min_age=0))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def make(repo: object = None) -> tuple[SnapshotEngine, FakeBackend, MemoryJournal]:
    backend = FakeBackend()
    journal = MemoryJournal()
    engine = SnapshotEngine({"root": CFG}, repo or MemoryRepository(),  # type: ignore[arg-type]
                            {"btrfs": backend}, journal, clock=Clock())
    return engine, backend, journal


def test_create_list_get_delete() -> None:
    engine, backend, journal = make()
    a = engine.create_snapshot("root", "one", {"k": "v"}, job_id=4)
    b = engine.create_snapshot("root", "two")
    assert (a.id, b.id) == ("root-1", "root-2")
    assert [r.id for r in engine.list_snapshots("root")] == ["root-1", "root-2"]
    assert engine.get_snapshot("root-1").userdata == {"k": "v"}
    assert engine.delete_snapshots(["root-1"]) == ["root-1"]
    assert "root-1" not in backend.saved
    with pytest.raises(SnapshotNotFound):
        engine.get_snapshot("root-1")
    assert [s for s, _ in journal.entries] == ["snapshot.create", "snapshot.created",
                                               "snapshot.create", "snapshot.created",
                                               "snapshot.delete", "snapshot.deleted"]


def test_unknown_config_and_unrecorded_snapshot() -> None:
    engine, backend, _ = make()
    with pytest.raises(ConfigNotFound):
        engine.create_snapshot("home")
    engine.create_snapshot("root")
    backend.saved["root-1"] = ("someone-elses", {})
    with pytest.raises(NotRecorded):
        engine.rollback("root-1")
    with pytest.raises(NotRecorded):
        engine.delete_snapshots(["root-1"])


def test_delete_is_all_or_nothing_on_bad_ids() -> None:
    engine, backend, _ = make()
    engine.create_snapshot("root")
    with pytest.raises(SnapshotNotFound):
        engine.delete_snapshots(["root-1", "root-9"])
    assert "root-1" in backend.saved


def test_pre_post_pairs_even_on_failure() -> None:
    engine, backend, _ = make()
    with pytest.raises(RuntimeError), engine.pre_post("root", "job", job_id=9) as pair:
        backend.live["f"] = "new"
        raise RuntimeError("job failed")
    assert pair.post is not None and pair.post.pre_id == pair.pre.id
    assert pair.pre.important and pair.pre.job_id == 9
    assert [(e.path, e.change) for e in engine.diff(pair.pre.id, pair.post.id)] == [
        ("f", "created")]


def test_rollback_records_previous_and_cleanup() -> None:
    engine, backend, _ = make()
    backend.live = {"a": "1"}
    s1 = engine.create_snapshot("root", cleanup="number")
    backend.live = {"a": "2"}
    result = engine.rollback(s1.id)
    assert result.previous == "root-2" and backend.live == {"a": "1"}
    prev = engine.get_snapshot("root-2")
    assert prev.important and prev.description == "before rollback to root-1"
    for _ in range(4):
        engine.create_snapshot("root", cleanup="number")
    res = engine.cleanup("root")
    # number_limit=2 of the unimportant ones (root-1, root-3..6): keep 5, 6
    assert res.deleted == ("root-1", "root-3", "root-4")


def test_recover_finishes_interrupted_undo() -> None:
    engine, backend, journal = make()
    backend.live = {"a": "1"}
    s = engine.create_snapshot("root")
    backend.live = {"a": "2", "b": "x"}
    journal.record("undo.begin", {"op": "ab" * 8, "config": "root", "snapshot": s.id,
                                  "paths": ["a", "b"]})
    outcomes = engine.recover(journal.entries)
    assert [o.outcome for o in outcomes] == ["finished"]
    assert backend.live == {"a": "1"}
    assert engine.recover(journal.entries) == []


def test_recover_removes_unrecorded_snapshot() -> None:
    engine, backend, journal = make()
    backend.saved["root-1"] = ("u", {})
    journal.record("snapshot.create", {"op": "cd" * 8, "config": "root",
                                       "snapshot": "root-1"})
    assert [o.outcome for o in engine.recover(journal.entries)] == ["reverted"]
    assert backend.saved == {}


def test_sqlite_repository_round_trip(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.db")
    ensure_schema(conn)
    ensure_schema(conn)  # idempotent
    repo = SqliteSnapshotRepository(conn)
    engine, _, _ = make(repo)
    a = engine.create_snapshot("root", "d\u00e9sc", {"x": "y"}, job_id=2, important=True)
    assert repo.get(a.id) == a
    assert repo.list("root") == [a] and repo.list("other") == []
    repo.delete(a.id)
    assert repo.get(a.id) is None
    with pytest.raises(sqlite3.IntegrityError):
        repo.add(a)
        repo.add(a)


def test_file_journal_drops_torn_line(tmp_path: Path) -> None:
    j = FileJournal(tmp_path / "j")
    j.record("a", {"op": "1"})
    with open(tmp_path / "j", "ab") as f:
        f.write(b'{"step": "b", "da')
    assert read_journal(tmp_path / "j") == [("a", {"op": "1"})]


def test_record_model_is_strict() -> None:
    with pytest.raises(ValueError):
        SnapshotRecord.model_validate({"id": "../x", "config": "root", "number": 1,
                                       "backend": "btrfs", "created": datetime.now(UTC)})


def test_invalid_description_leaves_nothing() -> None:
    engine, backend, journal = make()
    with pytest.raises(ValueError):
        engine.create_snapshot("root", "x" * 5000)
    assert backend.saved == {} and engine.list_snapshots("root") == []
    assert journal.entries == []


def test_failed_create_is_cleaned_at_once() -> None:
    engine, backend, journal = make()

    def boom(config: object, snap_id: str) -> object:
        backend.saved[snap_id] = ("half", {})
        raise OSError("disk full")

    backend.create = boom  # type: ignore[method-assign,assignment]
    with pytest.raises(OSError):
        engine.create_snapshot("root")
    assert backend.saved == {}
    assert engine.recover(journal.entries) == []


def test_recover_reports_a_failure_and_goes_on() -> None:
    engine, backend, journal = make()
    backend.live = {"a": "1"}
    s = engine.create_snapshot("root")
    journal.record("undo.begin", {"op": "ee" * 8, "config": "root", "snapshot": "root-7",
                                  "paths": ["a"]})
    backend.live = {"a": "2"}
    journal.record("undo.begin", {"op": "ff" * 8, "config": "root", "snapshot": s.id,
                                  "paths": ["a"]})
    outcomes = {o.op: o for o in engine.recover(journal.entries)}
    assert outcomes["ee" * 8].outcome == "failed" and "root-7" in outcomes["ee" * 8].message
    assert outcomes["ff" * 8].outcome == "finished" and backend.live == {"a": "1"}
    # the failed one stays open, to be tried again
    assert [o.op for o in engine.recover(journal.entries)] == ["ee" * 8]


def test_listeners_hear_of_every_snapshot() -> None:
    created: list[str] = []
    deleted: list[list[str]] = []
    backend = FakeBackend()
    engine = SnapshotEngine({"root": CFG}, MemoryRepository(), {"btrfs": backend},
                            MemoryJournal(), clock=Clock(),
                            on_created=lambda r: created.append(r.id),
                            on_deleted=deleted.append)
    with engine.pre_post("root", "job"):
        pass
    engine.rollback("root-1")
    engine.delete_snapshots(["root-2"])
    assert created == ["root-1", "root-2", "root-3"]
    assert deleted == [["root-2"]]


def test_undo_reports_progress() -> None:
    engine, backend, _ = make()
    backend.live = {"a": "1", "b": "1"}
    s = engine.create_snapshot("root")
    seen: list[tuple[float, str]] = []
    engine.undo(s.id, ["a", "b", "c"], progress=lambda f, p: seen.append((f, p)))
    assert seen == [(0.0, "a"), (1 / 3, "b"), (2 / 3, "c")]


def test_pending_and_clear(tmp_path: Path) -> None:
    j = FileJournal(tmp_path / "j")
    backend = FakeBackend()
    engine = SnapshotEngine({"root": CFG}, MemoryRepository(), {"btrfs": backend}, j,
                            clock=Clock())
    s = engine.create_snapshot("root")
    assert SnapshotEngine.pending(j.entries()) == []
    j.record("undo.begin", {"op": "aa" * 8, "config": "root", "snapshot": s.id,
                            "paths": ["x"]})
    assert SnapshotEngine.pending(j.entries()) == ["aa" * 8]
    engine.recover(j.entries())
    assert SnapshotEngine.pending(j.entries()) == []
    j.clear()
    assert j.entries() == []
