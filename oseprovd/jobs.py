"""The job manager: long work as Job objects with progress, cancel and persistence.

Engine side only; bus/job.py exports jobs on the bus by listening to this manager.
An operation is a coroutine function taking a JobContext and returning a result dict.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from oseprovd.errors import Busy, Cancelled, NotFound, OseError, ShuttingDown
from oseprovd.log import MSG_JOB
from oseprovd.store.jobs import JobRecord, JobRepository, JobState, JobStep

log = logging.getLogger(__name__)

Operation = Callable[["JobContext"], Awaitable[dict[str, Any]]]


class JobListener(Protocol):
    def job_created(self, job: JobRecord) -> None: ...

    def job_changed(self, job: JobRecord, fields: set[str]) -> None: ...

    def job_finished(self, job: JobRecord) -> None: ...


class JobContext:
    """What a running operation sees: progress reporting, cancellation, its step journal."""

    def __init__(self, manager: JobManager, job: JobRecord) -> None:
        self._manager = manager
        self.job = job
        self._cancel = asyncio.Event()

    @property
    def job_id(self) -> int:
        return self.job.id

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Call at checkpoints: raises Cancelled once a cancel or a shutdown was asked for."""
        if self._cancel.is_set():
            raise Cancelled("the job was cancelled at a checkpoint")

    async def wait_cancelled(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._cancel.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def progress(self, fraction: float, text: str | None = None) -> None:
        fraction = min(1.0, max(0.0, fraction))
        fields = set()
        if fraction != self.job.progress:
            self.job.progress = fraction
            fields.add("progress")
        if text is not None and text != self.job.status_text:
            self.job.status_text = text
            fields.add("status_text")
        if fields:
            self._manager._notify_changed(self.job, fields)

    def step(self, kind: str, **data: Any) -> int:
        """Journal a step durably before acting on it (blocking; fast: one SQLite commit)."""
        return self._manager.repo.append_step(self.job.id, kind, data)

    def steps(self) -> list[JobStep]:
        return self._manager.repo.steps(self.job.id)

    def request_cancel(self) -> None:
        self._cancel.set()


class JobManager:
    def __init__(self, repo: JobRepository, keep_finished: int = 500) -> None:
        self.repo = repo
        self.keep_finished = keep_finished
        self._listeners: list[JobListener] = []
        self._running: dict[int, tuple[JobContext, asyncio.Task[None]]] = {}
        self._exclusive: dict[str, int] = {}
        self._accepting = True

    def add_listener(self, listener: JobListener) -> None:
        self._listeners.append(listener)

    def recover(self) -> list[int]:
        """At start: jobs a dead daemon left running become `interrupted`."""
        ids = self.repo.mark_interrupted()
        for job_id in ids:
            log.warning("job %d was interrupted by a daemon stop", job_id,
                        extra={"MESSAGE_ID": MSG_JOB, "JOB_ID": job_id,
                               "OSE_JOB_STATE": "interrupted"})
        self.repo.prune(self.keep_finished)
        return ids

    @property
    def running_count(self) -> int:
        return len(self._running)

    def get(self, job_id: int) -> JobRecord:
        if job_id in self._running:
            return self._running[job_id][0].job
        job = self.repo.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}; see the list with `osectl jobs list`")
        return job

    def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[JobRecord]:
        live = {jid: ctx.job for jid, (ctx, _) in self._running.items()}
        jobs = [live.get(j.id, j) for j in self.repo.recent(state, limit)]
        return [j for j in jobs if state is None or j.state == state]

    def start(
        self, operation: str, caller_uid: int, run: Operation, exclusive: str | None = None
    ) -> JobRecord:
        """Create and start a job at once. `exclusive` names a group of operations that
        must not overlap (a reset and a tuning change share "system")."""
        if not self._accepting:
            raise ShuttingDown("the daemon is stopping; try again when it is back")
        if exclusive is not None and exclusive in self._exclusive:
            other = self._exclusive[exclusive]
            raise Busy(f"job {other} is running an operation that must not overlap; "
                       f"wait for it (`osectl jobs watch {other}`) or cancel it")
        job = self.repo.create(operation, caller_uid, exclusive)
        ctx = JobContext(self, job)
        if exclusive is not None:
            self._exclusive[exclusive] = job.id
        log.info("job %d (%s) started by uid %d", job.id, operation, caller_uid,
                 extra={"MESSAGE_ID": MSG_JOB, "JOB_ID": job.id, "OSE_UID": caller_uid,
                        "OSE_OPERATION": operation, "OSE_JOB_STATE": "queued"})
        task = asyncio.get_running_loop().create_task(self._run(ctx, run))
        self._running[job.id] = (ctx, task)
        for listener in self._listeners:
            listener.job_created(job)
        return job

    async def _run(self, ctx: JobContext, run: Operation) -> None:
        job = ctx.job
        job.state = JobState.RUNNING
        job.started = time.time()
        self._notify_changed(job, {"state", "started"})
        # The operation starts first: its first step usually hands the work to a thread,
        # and the running state is committed (an fsync) while that thread works instead
        # of before it starts. A daemon that dies before this commit leaves the job
        # queued, which recover() marks interrupted just the same.
        op = asyncio.ensure_future(run(ctx))
        try:
            await asyncio.sleep(0)
            try:
                self.repo.save(job)
            except Exception:
                log.exception("job %d: could not record its start", job.id,
                              extra={"JOB_ID": job.id})
            job.result = await op
            job.state = JobState.SUCCEEDED
            job.progress = 1.0
        except (Cancelled, asyncio.CancelledError) as exc:
            op.cancel()  # cancelled before it awaited the operation: stop that too
            job.state = JobState.CANCELLED if self._accepting else JobState.INTERRUPTED
            job.error_name = "Cancelled" if self._accepting else "Interrupted"
            job.error_message = (str(exc) or "cancelled") if self._accepting else (
                "the daemon stopped; the job stopped at a checkpoint")
        except OseError as exc:
            job.state = JobState.FAILED
            job.error_name, job.error_message = exc.name, str(exc)
        except Exception:
            log.exception("job %d (%s) failed", job.id, job.operation,
                          extra={"JOB_ID": job.id})
            job.state = JobState.FAILED
            job.error_name = "Internal"
            job.error_message = "an internal error stopped the job; see the daemon's journal"
        job.finished = time.time()
        self.repo.save(job)
        log.info("job %d (%s) %s%s", job.id, job.operation, job.state.value,
                 f": {job.error_message}" if job.error_message else "",
                 extra={"MESSAGE_ID": MSG_JOB, "JOB_ID": job.id, "OSE_UID": job.caller_uid,
                        "OSE_OPERATION": job.operation, "OSE_JOB_STATE": job.state.value})
        del self._running[job.id]
        if job.exclusive is not None and self._exclusive.get(job.exclusive) == job.id:
            del self._exclusive[job.exclusive]
        self._notify_changed(job, {"state", "progress", "finished", "result", "error"})
        for listener in self._listeners:
            listener.job_finished(job)

    def cancel(self, job_id: int) -> None:
        if job_id not in self._running:
            job = self.get(job_id)  # NotFound if unknown
            raise OseError(f"job {job_id} is {job.state.value}; only a running job can be "
                           "cancelled")
        self._running[job_id][0].request_cancel()

    def _notify_changed(self, job: JobRecord, fields: set[str]) -> None:
        for listener in self._listeners:
            listener.job_changed(job, fields)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Accept no new jobs; ask running ones to stop at a checkpoint; what does not stop
        in time is cancelled and recorded as interrupted."""
        self._accepting = False
        if not self._running:
            return
        for ctx, _ in self._running.values():
            ctx.request_cancel()
        tasks = [task for _, task in self._running.values()]
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
