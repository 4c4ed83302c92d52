"""The audit log: every non-public call, who made it, what was decided, how it ended."""

from __future__ import annotations

import time

from pydantic import BaseModel

from oseprovd.store.db import Store


class AuditEntry(BaseModel):
    id: int = 0
    time: float
    sender: str
    uid: int
    pid: int
    method: str
    action: str
    args_digest: str
    decision: str
    outcome: str


class AuditRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, entry: AuditEntry) -> int:
        with self._store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO audit (time, sender, uid, pid, method, action, args_digest,"
                " decision, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.time or time.time(), entry.sender, entry.uid, entry.pid, entry.method,
                    entry.action, entry.args_digest, entry.decision, entry.outcome,
                ),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def recent(self, since: float = 0.0, limit: int = 100) -> list[AuditEntry]:
        rows = self._store.query(
            "SELECT * FROM audit WHERE time >= ? ORDER BY id DESC LIMIT ?", (since, limit)
        )
        return [AuditEntry.model_validate(dict(r)) for r in rows]
