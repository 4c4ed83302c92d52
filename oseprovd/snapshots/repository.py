"""Where snapshot records live: a Protocol, and the SQLite table of the state store."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Protocol

from oseprovd.snapshots.models import SnapshotRecord


class SnapshotRepository(Protocol):
    def add(self, record: SnapshotRecord) -> None: ...
    def get(self, snap_id: str) -> SnapshotRecord | None: ...
    def list(self, config: str | None = None) -> list[SnapshotRecord]: ...
    def delete(self, snap_id: str) -> None: ...


_COLUMNS = ("id", "config", "number", "backend", "kind", "pre_id", "created",
            "description", "userdata", "job_id", "important", "cleanup", "size", "uuid")


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS snapshots (
            id TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            number INTEGER NOT NULL,
            backend TEXT NOT NULL,
            kind TEXT NOT NULL,
            pre_id TEXT,
            created TEXT NOT NULL,
            description TEXT NOT NULL,
            userdata TEXT NOT NULL,
            job_id INTEGER,
            important INTEGER NOT NULL,
            cleanup TEXT NOT NULL,
            size INTEGER,
            uuid TEXT NOT NULL,
            UNIQUE (config, number)
        )"""
    )
    conn.execute("CREATE INDEX IF NOT EXISTS snapshots_config ON snapshots (config, number)")


class SqliteSnapshotRepository:
    """The `snapshots` table; the caller owns the connection (and its migrations)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def add(self, record: SnapshotRecord) -> None:
        values = record.model_dump()
        values["created"] = record.created.isoformat()
        values["userdata"] = json.dumps(record.userdata, sort_keys=True)
        values["important"] = int(record.important)
        with self.conn:
            self.conn.execute(
                f"INSERT INTO snapshots ({', '.join(_COLUMNS)}) "  # noqa: S608 (constant)
                f"VALUES ({', '.join('?' for _ in _COLUMNS)})",
                [values[c] for c in _COLUMNS],
            )

    def _row(self, row: tuple[object, ...]) -> SnapshotRecord:
        values = dict(zip(_COLUMNS, row, strict=True))
        values["created"] = datetime.fromisoformat(str(values["created"]))
        values["userdata"] = json.loads(str(values["userdata"]))
        values["important"] = bool(values["important"])
        return SnapshotRecord.model_validate(values)

    def get(self, snap_id: str) -> SnapshotRecord | None:
        row = self.conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM snapshots WHERE id = ?",  # noqa: S608
            (snap_id,),
        ).fetchone()
        return None if row is None else self._row(row)

    def list(self, config: str | None = None) -> list[SnapshotRecord]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM snapshots"  # noqa: S608
        args: tuple[str, ...] = ()
        if config is not None:
            sql += " WHERE config = ?"
            args = (config,)
        sql += " ORDER BY config, number"
        return [self._row(r) for r in self.conn.execute(sql, args)]

    def delete(self, snap_id: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM snapshots WHERE id = ?", (snap_id,))
