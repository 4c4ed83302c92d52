"""The state store: one SQLite database in WAL mode under the state dir.

Schema changes are forward migrations, numbered; `user_version` records the last one
applied. Services add theirs to MIGRATIONS. synchronous=FULL because job step journals
must be on disk before the step acts.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DB_NAME = "oseprovd.db"

Migration = Callable[[sqlite3.Connection], None]


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Statements one by one: executescript() would commit the migration's transaction."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _m1_jobs_and_audit(conn: sqlite3.Connection) -> None:
    run_script(
        conn,
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            operation TEXT NOT NULL,
            state TEXT NOT NULL,
            progress REAL NOT NULL DEFAULT 0,
            status_text TEXT NOT NULL DEFAULT '',
            caller_uid INTEGER NOT NULL,
            exclusive TEXT,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            result TEXT NOT NULL DEFAULT '{}',
            error_name TEXT NOT NULL DEFAULT '',
            error_message TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX jobs_state ON jobs(state);
        CREATE TABLE job_steps (
            job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            time REAL NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (job_id, seq)
        );
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time REAL NOT NULL,
            sender TEXT NOT NULL,
            uid INTEGER NOT NULL,
            pid INTEGER NOT NULL,
            method TEXT NOT NULL,
            action TEXT NOT NULL,
            args_digest TEXT NOT NULL,
            decision TEXT NOT NULL,
            outcome TEXT NOT NULL
        );
        CREATE INDEX audit_time ON audit(time);
        """
    )


def _m_snapshots(conn: sqlite3.Connection) -> None:
    """Snapshot records (the engine's own schema) and the pages of Diff jobs."""
    from oseprovd.snapshots.repository import ensure_schema

    ensure_schema(conn)
    run_script(
        conn,
        """
        CREATE TABLE snapshot_diffs (
            diff_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            path BLOB NOT NULL,
            change TEXT NOT NULL,
            PRIMARY KEY (diff_id, seq)
        )
        """
    )


def _m_discovery_reports(conn: sqlite3.Connection) -> None:
    """Stored discovery scans (org.ose.Discovery1.Scan): the full report as JSON, and the
    summary columns ListReports shows without parsing it."""
    run_script(
        conn,
        """
        CREATE TABLE reports (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            created REAL NOT NULL,
            caller_uid INTEGER NOT NULL,
            subset TEXT NOT NULL,
            collectors TEXT NOT NULL,
            failed TEXT NOT NULL,
            duration_ms REAL NOT NULL,
            data TEXT NOT NULL
        );
        """
    )


MIGRATIONS: list[Migration] = [_m1_jobs_and_audit, _m_snapshots, _m_discovery_reports]


class Store:
    """A connection shared by the loop and worker threads, serialized by a lock."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        _ensure_private_dir(state_dir)
        self.path = state_dir / DB_NAME
        old_umask = os.umask(0o077)  # the db, -wal and -shm files are created 0600
        try:
            self._conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        finally:
            os.umask(old_umask)
        self._lock = threading.RLock()
        self.migrate()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        with self.transaction() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"state store {self.path} has schema {version}, newer than this "
                    f"oseprovd ({len(MIGRATIONS)}); upgrade oseprovd"
                )
            for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
                step(conn)
                conn.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, held for the caller alone (autocommit; for repositories that
        manage their own statements, such as the snapshot engine's)."""
        with self._lock:
            yield self._conn

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._conn.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    def disk_usage(self) -> int:
        total = 0
        for entry in os.scandir(self.state_dir):
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        return total

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _ensure_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not path.is_dir() or path.is_symlink():
        raise RuntimeError(f"state dir {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise RuntimeError(f"state dir {path} is owned by uid {st.st_uid}, not by this daemon")
    os.chmod(path, 0o700)
