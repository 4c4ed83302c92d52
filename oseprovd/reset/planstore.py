"""Plans and executions in SQLite (reset.db in the state dir).

A plan's items live in their own table, ordered by path bytes (`seq`), so a plan of a
million files costs a page per GetPlanItems and a streamed pass for its digest or its
execution, never one giant model.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from oseprovd.reset.models import ExecuteResult, ExecutionRecord, ExecutionState, Plan
from oseprovd.reset.scan import Item

SCHEMA = """
CREATE TABLE IF NOT EXISTS reset_plans (
    id TEXT PRIMARY KEY, digest TEXT NOT NULL, created TEXT NOT NULL, plan TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reset_anchors (
    plan_id TEXT NOT NULL, idx INTEGER NOT NULL, rel TEXT NOT NULL, rule TEXT NOT NULL,
    description TEXT NOT NULL, PRIMARY KEY (plan_id, idx));
CREATE TABLE IF NOT EXISTS reset_items (
    plan_id TEXT NOT NULL, seq INTEGER NOT NULL, path BLOB NOT NULL, kind TEXT NOT NULL,
    size INTEGER NOT NULL, bytes INTEGER NOT NULL, uid INTEGER NOT NULL,
    gid INTEGER NOT NULL, ino INTEGER NOT NULL, dev INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, cls TEXT NOT NULL, risk TEXT NOT NULL, rule TEXT NOT NULL,
    anchor INTEGER NOT NULL, PRIMARY KEY (plan_id, seq));
CREATE TABLE IF NOT EXISTS reset_saved (
    execution TEXT NOT NULL, path BLOB NOT NULL, PRIMARY KEY (execution, path));
CREATE TABLE IF NOT EXISTS reset_unsaved (
    execution TEXT NOT NULL, path BLOB NOT NULL, PRIMARY KEY (execution, path));
CREATE TABLE IF NOT EXISTS reset_executions (
    id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, digest TEXT NOT NULL, state TEXT NOT NULL,
    started TEXT NOT NULL, finished TEXT, snapshot TEXT, job_id INTEGER, result TEXT);
"""

ITEM_COLUMNS = ("path", "kind", "size", "bytes", "uid", "gid", "ino", "dev", "mtime_ns",
                "cls", "risk", "rule", "anchor")
# (seq, path bytes, kind, size, bytes, uid, gid, ino, dev, mtime_ns, cls, risk, rule, anchor)
Row = tuple[int, bytes, str, int, int, int, int, int, int, int, str, str, str, int]


class AnchorRow(Protocol):
    rel: str
    rule: str


def dumps(model: BaseModel) -> str:
    """JSON that keeps names which aren't UTF-8 (surrogate escapes, as os.fsdecode
    makes them): pydantic's own JSON refuses them, json.dumps escapes them."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True)


def _row_digest_bytes(row: Row) -> bytes:
    # repr of a tuple of ints, bytes and ASCII strings: unambiguous and one C call
    return repr(row).encode() + b"\n"


class PlanStore:
    """Uses its own connection, safe to share between threads (one lock)."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)
        self.lock = threading.RLock()

    def close(self) -> None:
        self.conn.close()

    # -- plans -----------------------------------------------------------------------

    def add_items(self, plan_id: str, anchors: Sequence[tuple[str, str, str]],
                  items: Iterable[Item], header: bytes) -> tuple[str, int]:
        """Store anchors and items (sorted here by path bytes) and return the digest
        over `header` and every item row, and the item count."""
        with self.lock:
            c = self.conn
            c.execute("BEGIN")
            try:
                c.executemany("INSERT INTO reset_anchors VALUES (?, ?, ?, ?, ?)",
                              [(plan_id, i, rel, rule, desc)
                               for i, (rel, rule, desc) in enumerate(anchors)])
                c.execute("CREATE TEMP TABLE IF NOT EXISTS reset_tmp (path BLOB, kind TEXT, "
                          "size INT, bytes INT, uid INT, gid INT, ino INT, dev INT, "
                          "mtime_ns INT, cls TEXT, risk TEXT, rule TEXT, anchor INT)")
                c.execute("DELETE FROM reset_tmp")
                c.executemany(
                    "INSERT INTO reset_tmp VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    ((os.fsencode(it[0]), *it[1:]) for it in items))
                c.execute(
                    f"INSERT INTO reset_items SELECT ?, row_number() OVER (ORDER BY path) - 1, "  # noqa: S608
                    f"{', '.join(ITEM_COLUMNS)} FROM reset_tmp ORDER BY path", (plan_id,))
                c.execute("DELETE FROM reset_tmp")
                h = hashlib.sha256(header)
                count = 0
                for row in self._rows(plan_id, 0, None, descending=False):
                    h.update(_row_digest_bytes(row))
                    count += 1
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return h.hexdigest(), count

    def digest(self, plan_id: str, header: bytes) -> str:
        """The digest over the stored rows again: what Execute checks, so the rows it
        acts on are the rows that were previewed."""
        h = hashlib.sha256(header)
        for row in self.iter_rows(plan_id):
            h.update(_row_digest_bytes(row))
        return h.hexdigest()

    def save_plan(self, plan: Plan) -> None:
        with self.lock:
            self.conn.execute("INSERT INTO reset_plans VALUES (?, ?, ?, ?)",
                              (plan.id, plan.digest, plan.created.isoformat(),
                               dumps(plan)))

    def get_plan(self, plan_id: str) -> Plan | None:
        with self.lock:
            row = self.conn.execute("SELECT plan FROM reset_plans WHERE id = ?",
                                    (plan_id,)).fetchone()
        return None if row is None else Plan.model_validate(json.loads(row[0]))

    def list_plans(self) -> list[Plan]:
        with self.lock:
            rows = self.conn.execute("SELECT plan FROM reset_plans ORDER BY created").fetchall()
        return [Plan.model_validate(json.loads(r[0])) for r in rows]

    def delete_plan(self, plan_id: str) -> None:
        with self.lock:
            c = self.conn
            c.execute("BEGIN")
            for table in ("reset_items", "reset_anchors"):
                c.execute(f"DELETE FROM {table} WHERE plan_id = ?", (plan_id,))  # noqa: S608
            c.execute("DELETE FROM reset_plans WHERE id = ?", (plan_id,))
            c.execute("COMMIT")

    def anchors(self, plan_id: str) -> list[tuple[str, str, str]]:
        with self.lock:
            return [(str(r[0]), str(r[1]), str(r[2])) for r in self.conn.execute(
                "SELECT rel, rule, description FROM reset_anchors WHERE plan_id = ? "
                "ORDER BY idx", (plan_id,))]

    def _rows(self, plan_id: str, lo: int, hi: int | None, descending: bool) -> list[Row]:
        sql = (f"SELECT seq, {', '.join(ITEM_COLUMNS)} FROM reset_items "  # noqa: S608
               "WHERE plan_id = ? AND seq >= ?")
        args: list[object] = [plan_id, lo]
        if hi is not None:
            sql += " AND seq < ?"
            args.append(hi)
        sql += " ORDER BY seq" + (" DESC" if descending else "")
        return self.conn.execute(sql, args).fetchall()

    def rows(self, plan_id: str, lo: int, hi: int | None = None,
             descending: bool = False) -> list[Row]:
        with self.lock:
            return self._rows(plan_id, lo, hi, descending)

    def iter_rows(self, plan_id: str, batch: int = 4096) -> Iterator[Row]:
        lo = 0
        while True:
            rows = self.rows(plan_id, lo, lo + batch)
            if not rows:
                return
            yield from rows
            lo += batch

    # -- executions ------------------------------------------------------------------

    def add_execution(self, record: ExecutionRecord) -> None:
        with self.lock:
            self.conn.execute(
                "INSERT INTO reset_executions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.plan, record.digest, record.state,
                 record.started.isoformat(), None, record.snapshot, record.job_id, None))

    def update_execution(self, exec_id: str, *, state: ExecutionState | None = None,
                         snapshot: str | None = None, finished: datetime | None = None,
                         result: ExecuteResult | None = None) -> None:
        sets: list[str] = []
        args: list[object] = []
        for col, val in (("state", state), ("snapshot", snapshot),
                         ("finished", finished.isoformat() if finished else None),
                         ("result", dumps(result) if result else None)):
            if val is not None:
                sets.append(f"{col} = ?")
                args.append(val)
        if not sets:
            return
        with self.lock:
            self.conn.execute(f"UPDATE reset_executions SET {', '.join(sets)} "  # noqa: S608
                              "WHERE id = ?", (*args, exec_id))

    def _execution(self, r: Sequence[object]) -> ExecutionRecord:
        return ExecutionRecord(
            id=str(r[0]), plan=str(r[1]), digest=str(r[2]), state=r[3],
            started=datetime.fromisoformat(str(r[4])),
            finished=datetime.fromisoformat(str(r[5])) if r[5] else None,
            snapshot=str(r[6]) if r[6] else None,
            job_id=int(str(r[7])) if r[7] is not None else None,
            result=ExecuteResult.model_validate(json.loads(str(r[8]))) if r[8] else None)

    def add_saved(self, exec_id: str, paths: Iterable[str]) -> None:
        """Extra paths saved in an execution's rollback point (package files)."""
        with self.lock:
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT OR IGNORE INTO reset_saved VALUES (?, ?)",
                                  [(exec_id, os.fsencode(p)) for p in paths])
            self.conn.execute("COMMIT")

    def add_unsaved(self, exec_id: str, paths: Iterable[str]) -> None:
        """Items the rollback point could not hold: never removed, also on resume."""
        with self.lock:
            self.conn.executemany("INSERT OR IGNORE INTO reset_unsaved VALUES (?, ?)",
                                  [(exec_id, os.fsencode(p)) for p in paths])

    def unsaved(self, exec_id: str) -> list[str]:
        with self.lock:
            return [os.fsdecode(r[0]) for r in self.conn.execute(
                "SELECT path FROM reset_unsaved WHERE execution = ?", (exec_id,))]

    def saved(self, exec_id: str) -> list[str]:
        with self.lock:
            return [os.fsdecode(r[0]) for r in self.conn.execute(
                "SELECT path FROM reset_saved WHERE execution = ? ORDER BY path",
                (exec_id,))]

    def get_execution(self, exec_id: str) -> ExecutionRecord | None:
        with self.lock:
            row = self.conn.execute("SELECT * FROM reset_executions WHERE id = ?",
                                    (exec_id,)).fetchone()
        return None if row is None else self._execution(row)

    def list_executions(self) -> list[ExecutionRecord]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT * FROM reset_executions ORDER BY started").fetchall()
        return [self._execution(r) for r in rows]
