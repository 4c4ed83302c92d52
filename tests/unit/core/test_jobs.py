import asyncio

import pytest

from oseprovd.errors import Busy, NotFound, OseError, ShuttingDown
from oseprovd.jobs import JobManager
from oseprovd.store.db import Store
from oseprovd.store.jobs import JobRepository, JobState


class Recorder:
    def __init__(self):
        self.events = []

    def job_created(self, job):
        self.events.append(("created", job.id))

    def job_changed(self, job, fields):
        self.events.append(("changed", job.id, frozenset(fields)))

    def job_finished(self, job):
        self.events.append(("finished", job.id, job.state))


@pytest.fixture
def manager(tmp_path):
    store = Store(tmp_path / "state")
    m = JobManager(JobRepository(store))
    yield m
    store.close()


def run(coro):
    return asyncio.run(coro)


def test_job_runs_reports_progress_and_persists(manager):
    rec = Recorder()
    manager.add_listener(rec)

    async def op(ctx):
        ctx.step("one", n=1)
        ctx.progress(0.5, "half")
        return {"answer": 42}

    async def main():
        job = manager.start("demo", 1000, op)
        while manager.running_count:
            await asyncio.sleep(0.01)
        return job.id

    job_id = run(main())
    stored = manager.repo.get(job_id)
    assert stored.state is JobState.SUCCEEDED and stored.result == {"answer": 42}
    assert stored.progress == 1.0 and stored.caller_uid == 1000
    assert [s.kind for s in manager.repo.steps(job_id)] == ["one"]
    assert rec.events[0] == ("created", job_id)
    assert rec.events[-1] == ("finished", job_id, JobState.SUCCEEDED)


def test_exclusive_operations_do_not_overlap(manager):
    async def slow(ctx):
        await ctx.wait_cancelled(5)
        ctx.check_cancelled()
        return {}

    async def main():
        first = manager.start("reset", 0, slow, exclusive="system")
        with pytest.raises(Busy):
            manager.start("tune", 0, slow, exclusive="system")
        other = manager.start("scan", 0, slow)  # not exclusive: fine
        manager.cancel(first.id)
        manager.cancel(other.id)
        while manager.running_count:
            await asyncio.sleep(0.01)
        again = manager.start("tune", 0, slow, exclusive="system")  # lock released
        manager.cancel(again.id)
        while manager.running_count:
            await asyncio.sleep(0.01)
        return first.id

    first_id = run(main())
    assert manager.repo.get(first_id).state is JobState.CANCELLED


def test_failure_and_internal_error_are_recorded_without_traceback(manager):
    async def fails(ctx):
        raise OseError("disk full; free some space")

    async def crashes(ctx):
        raise ZeroDivisionError

    async def main():
        a = manager.start("a", 0, fails)
        b = manager.start("b", 0, crashes)
        while manager.running_count:
            await asyncio.sleep(0.01)
        return a.id, b.id

    a, b = run(main())
    ja, jb = manager.repo.get(a), manager.repo.get(b)
    assert (ja.state, ja.error_name, ja.error_message) == (
        JobState.FAILED, "Failed", "disk full; free some space")
    assert jb.state is JobState.FAILED and jb.error_name == "Internal"
    assert "Traceback" not in jb.error_message and "ZeroDivision" not in jb.error_message


def test_shutdown_interrupts_and_refuses_new_jobs(manager):
    async def stubborn(ctx):
        await asyncio.sleep(60)  # never reaches a checkpoint
        return {}

    async def polite(ctx):
        await ctx.wait_cancelled(60)
        ctx.check_cancelled()
        return {}

    async def main():
        s = manager.start("stubborn", 0, stubborn)
        p = manager.start("polite", 0, polite)
        await asyncio.sleep(0.05)
        await manager.shutdown(timeout=0.2)
        with pytest.raises(ShuttingDown):
            manager.start("late", 0, polite)
        return s.id, p.id

    s, p = run(main())
    assert manager.repo.get(s).state is JobState.INTERRUPTED
    assert manager.repo.get(p).state is JobState.INTERRUPTED


def test_unknown_job(manager):
    with pytest.raises(NotFound):
        manager.get(12345)
    with pytest.raises(NotFound):
        manager.cancel(12345)


def test_running_state_is_stored_while_the_operation_works(manager):
    """The start is committed once the operation has begun (so that commit overlaps its
    work), and before the operation's first await returns."""
    seen = []

    async def op(ctx):
        seen.append(manager.repo.get(ctx.job_id).state)  # first step: not yet committed
        await asyncio.to_thread(lambda: None)
        seen.append(manager.repo.get(ctx.job_id).state)
        return {}

    async def main():
        job = manager.start("demo", 0, op)
        while manager.running_count:
            await asyncio.sleep(0.01)
        return job.id

    job_id = run(main())
    assert seen == [JobState.QUEUED, JobState.RUNNING]
    stored = manager.repo.get(job_id)
    assert stored.state is JobState.SUCCEEDED and stored.started <= stored.finished
