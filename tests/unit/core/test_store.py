import sqlite3
import stat

import pytest

from oseprovd.store.audit import AuditEntry, AuditRepository
from oseprovd.store.db import DB_NAME, MIGRATIONS, Store
from oseprovd.store.jobs import JobRepository, JobState


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state")
    yield s
    s.close()


def test_state_dir_and_files_are_private(store, tmp_path):
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    JobRepository(store).create("demo", 0, None)  # forces -wal and -shm to exist
    for p in (tmp_path / "state").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_wal_mode_and_schema_version_from_sqlite_itself(store, tmp_path):
    conn = sqlite3.connect(tmp_path / "state" / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "job_steps", "audit"} <= tables


def test_reopen_does_not_migrate_twice(tmp_path):
    Store(tmp_path / "s").close()
    s = Store(tmp_path / "s")
    assert s.schema_version == len(MIGRATIONS)
    s.close()


def test_newer_schema_is_refused(tmp_path):
    Store(tmp_path / "s").close()
    conn = sqlite3.connect(tmp_path / "s" / DB_NAME)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(tmp_path / "s")


def test_state_dir_symlink_is_refused(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(RuntimeError):
        Store(tmp_path / "link")


def test_interrupted_marks_running_and_keeps_steps(store, tmp_path):
    repo = JobRepository(store)
    running = repo.create("demo", 1000, None)
    running.state = JobState.RUNNING
    repo.save(running)
    repo.append_step(running.id, "step", {"i": 1})
    done = repo.create("demo", 0, None)
    done.state = JobState.SUCCEEDED
    repo.save(done)
    assert repo.mark_interrupted() == [running.id]
    # Ground truth straight from the database file, not through the repository.
    conn = sqlite3.connect(tmp_path / "state" / DB_NAME)
    states = dict(conn.execute("SELECT id, state FROM jobs"))
    assert states == {running.id: "interrupted", done.id: "succeeded"}
    assert conn.execute("SELECT kind, data FROM job_steps WHERE job_id=?",
                        (running.id,)).fetchall() == [("step", '{"i": 1}')]


def test_prune_keeps_newest_finished_and_all_interrupted(store):
    repo = JobRepository(store)
    ids = []
    for _ in range(5):
        j = repo.create("demo", 0, None)
        j.state = JobState.SUCCEEDED
        repo.save(j)
        ids.append(j.id)
    stuck = repo.create("demo", 0, None)
    stuck.state = JobState.INTERRUPTED
    repo.save(stuck)
    assert repo.prune(keep_finished=2) == 3
    assert {j.id for j in repo.recent(limit=100)} == {ids[-1], ids[-2], stuck.id}


def test_audit_roundtrip(store):
    repo = AuditRepository(store)
    repo.add(AuditEntry(time=10.0, sender=":1.5", uid=1000, pid=42, method="M.X",
                        action="org.ose.audit.read", args_digest="ab", decision="denied",
                        outcome="org.freedesktop.DBus.Error.AccessDenied"))
    (entry,) = repo.recent()
    assert (entry.uid, entry.sender, entry.decision) == (1000, ":1.5", "denied")
    assert repo.recent(since=11.0) == []
