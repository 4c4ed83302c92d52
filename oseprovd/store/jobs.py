"""Jobs and their step journals in the state store."""

from __future__ import annotations

import json
import sqlite3
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from oseprovd.store.db import Store


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class JobRecord(BaseModel):
    id: int
    operation: str
    state: JobState
    progress: float = 0.0
    status_text: str = ""
    caller_uid: int
    exclusive: str | None = None
    created: float
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] = {}
    error_name: str = ""
    error_message: str = ""


class JobStep(BaseModel):
    seq: int
    time: float
    kind: str
    data: dict[str, Any]


def _record(row: sqlite3.Row) -> JobRecord:
    values = dict(row)
    values["result"] = json.loads(values["result"])
    return JobRecord.model_validate(values)


class JobRepository:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, operation: str, caller_uid: int, exclusive: str | None) -> JobRecord:
        now = time.time()
        with self._store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO jobs (operation, state, caller_uid, exclusive, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (operation, JobState.QUEUED.value, caller_uid, exclusive, now),
            )
            job_id = cur.lastrowid
        assert job_id is not None
        return JobRecord(
            id=job_id, operation=operation, state=JobState.QUEUED, caller_uid=caller_uid,
            exclusive=exclusive, created=now,
        )

    def save(self, job: JobRecord) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET state=?, progress=?, status_text=?, started=?, finished=?,"
                " result=?, error_name=?, error_message=? WHERE id=?",
                (
                    job.state.value, job.progress, job.status_text, job.started, job.finished,
                    json.dumps(job.result), job.error_name, job.error_message, job.id,
                ),
            )

    def get(self, job_id: int) -> JobRecord | None:
        rows = self._store.query("SELECT * FROM jobs WHERE id=?", (job_id,))
        return _record(rows[0]) if rows else None

    def recent(self, state: JobState | None = None, limit: int = 100) -> list[JobRecord]:
        if state is None:
            rows = self._store.query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._store.query(
                "SELECT * FROM jobs WHERE state=? ORDER BY id DESC LIMIT ?", (state.value, limit)
            )
        return [_record(r) for r in rows]

    def mark_interrupted(self) -> list[int]:
        """Jobs left queued or running by a daemon that died: never forgotten, never resumed
        silently. Returns their ids."""
        now = time.time()
        with self._store.transaction() as conn:
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT id FROM jobs WHERE state IN (?, ?)",
                    (JobState.QUEUED.value, JobState.RUNNING.value),
                )
            ]
            conn.execute(
                "UPDATE jobs SET state=?, finished=?, error_name='Interrupted',"
                " error_message='the daemon stopped while this job was running; its step"
                " journal is kept' WHERE state IN (?, ?)",
                (JobState.INTERRUPTED.value, now, JobState.QUEUED.value, JobState.RUNNING.value),
            )
        return ids

    def append_step(self, job_id: int, kind: str, data: dict[str, Any]) -> int:
        """Journal a step; committed with synchronous=FULL before the caller acts."""
        with self._store.transaction() as conn:
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM job_steps WHERE job_id=?", (job_id,)
            ).fetchone()
            seq = int(row[0])
            conn.execute(
                "INSERT INTO job_steps (job_id, seq, time, kind, data) VALUES (?, ?, ?, ?, ?)",
                (job_id, seq, time.time(), kind, json.dumps(data)),
            )
        return seq

    def steps(self, job_id: int) -> list[JobStep]:
        rows = self._store.query(
            "SELECT seq, time, kind, data FROM job_steps WHERE job_id=? ORDER BY seq", (job_id,)
        )
        return [
            JobStep(seq=r["seq"], time=r["time"], kind=r["kind"], data=json.loads(r["data"]))
            for r in rows
        ]

    def prune(self, keep_finished: int) -> int:
        """Forget the oldest finished jobs beyond `keep_finished`; interrupted ones stay."""
        with self._store.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM jobs WHERE state IN (?, ?, ?) AND id NOT IN ("
                " SELECT id FROM jobs WHERE state IN (?, ?, ?) ORDER BY id DESC LIMIT ?)",
                (*_PRUNABLE, *_PRUNABLE, keep_finished),
            )
            return cur.rowcount


_PRUNABLE = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value)
