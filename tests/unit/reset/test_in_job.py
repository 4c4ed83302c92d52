"""The engine inside the daemon's job manager: its steps land in the job's step
journal (JobContext.step), a cancel stops it at a batch boundary, and the stored
steps drive resume."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from oseprovd.jobs import JobContext, JobManager
from oseprovd.reset.engine import JobJournal, entries_from_steps
from oseprovd.reset.models import ExecuteOptions, Selection
from oseprovd.store.db import Store
from oseprovd.store.jobs import JobRepository, JobState
from tests.unit.reset.livedin import all_paths, make_rig


def test_execute_as_a_job_then_cancel_and_resume(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    before = all_paths(rig.root)
    plan = rig.engine.preview(Selection(profile="light"))
    store = Store(tmp_path / "daemon-state")
    manager = JobManager(JobRepository(store))

    async def run(cancel_first: bool) -> tuple[int, Any]:
        async def op(ctx: JobContext) -> dict[str, Any]:
            if cancel_first:
                ctx.request_cancel()
            r = await asyncio.to_thread(
                rig.engine.execute, plan.id, plan.digest, ExecuteOptions(),
                JobJournal(ctx.step), job_id=ctx.job_id, progress=ctx.progress,
                check_cancelled=ctx.check_cancelled)
            return r.model_dump(mode="json")
        job = manager.start("reset.execute", 0, op, exclusive="system")
        while manager.running_count:
            await asyncio.sleep(0.01)
        return job.id, manager.get(job.id)

    job_id, job = asyncio.run(run(cancel_first=True))
    assert job.state == JobState.CANCELLED
    steps = entries_from_steps(manager.repo.steps(job_id))
    names = [s for s, _ in steps]
    assert names[0] == "reset.begin" and "reset.saved" in names
    assert "reset.delete" not in names  # stopped before the first batch
    (ex,) = rig.engine.list_executions()
    assert ex.state == "interrupted" and ex.job_id == job_id
    (d,) = rig.engine.decisions(steps)
    assert d.saved and not d.finished
    assert all_paths(rig.root) == before

    async def resume() -> Any:
        async def op(ctx: JobContext) -> dict[str, Any]:
            r = await asyncio.to_thread(rig.engine.resume, ex.id, steps,
                                        JobJournal(ctx.step), ctx.progress,
                                        ctx.check_cancelled)
            return r.model_dump(mode="json")
        job = manager.start("reset.resume", 0, op, exclusive="system")
        while manager.running_count:
            await asyncio.sleep(0.01)
        return manager.get(job.id)

    job2 = asyncio.run(resume())
    assert job2.state == JobState.SUCCEEDED, job2.error_message
    assert job2.result["removed"] == plan.item_count
    assert all_paths(rig.root) == before - rig.tree.light_removes
    store.close()
