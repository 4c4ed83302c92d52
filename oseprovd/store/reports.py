"""Stored discovery reports: each scan's full report, kept up to a count (retention).

A report's JSON is stored deflated (zlib, level 1: 350 KB of text become ~40 KB in
~1 ms): less to write and fsync per scan, and fewer pages through the daemon's SQLite
page cache. Rows written as text before that still read back.
"""

from __future__ import annotations

import json
import secrets
import time
import zlib

from pydantic import BaseModel

from oseprovd.store.db import Store


class ReportSummary(BaseModel):
    id: str
    created: float
    caller_uid: int
    subset: list[str]
    collectors: list[str]
    failed: list[str]  # collectors that erred or timed out
    duration_ms: float


class ReportRepository:
    def __init__(self, store: Store, keep: int = 50) -> None:
        self._store = store
        self.keep = keep

    def add(self, data: str, caller_uid: int, subset: list[str], collectors: list[str],
            failed: list[str], duration_ms: float) -> str:
        """Store one report (`data`: the report as JSON); returns its id. Older reports
        beyond `keep` are deleted in the same transaction."""
        report_id = secrets.token_hex(8)
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT INTO reports (id, created, caller_uid, subset, collectors, failed,"
                " duration_ms, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (report_id, time.time(), caller_uid, json.dumps(subset), json.dumps(collectors),
                 json.dumps(failed), duration_ms, zlib.compress(data.encode(), 1)))
            conn.execute("DELETE FROM reports WHERE seq NOT IN "
                         "(SELECT seq FROM reports ORDER BY seq DESC LIMIT ?)", (self.keep,))
        return report_id

    def data(self, report_id: str) -> str | None:
        rows = self._store.query("SELECT data FROM reports WHERE id = ?", (report_id,))
        if not rows:
            return None
        data = rows[0]["data"]
        return zlib.decompress(data).decode() if isinstance(data, bytes) else str(data)

    def summaries(self, limit: int = 1000) -> list[ReportSummary]:
        """Newest first."""
        rows = self._store.query(
            "SELECT id, created, caller_uid, subset, collectors, failed, duration_ms "
            "FROM reports ORDER BY seq DESC LIMIT ?", (limit,))
        return [ReportSummary(
            id=r["id"], created=r["created"], caller_uid=r["caller_uid"],
            subset=json.loads(r["subset"]), collectors=json.loads(r["collectors"]),
            failed=json.loads(r["failed"]), duration_ms=r["duration_ms"]) for r in rows]
