"""org.ose.Job1: one object per job at /org/ose/Provisioning1/Job/<id>.

Listens to the job manager; property changes go out as PropertiesChanged, coalesced to
at most one signal per job every 100 ms while it runs; its final changes go out at once
when it ends, and `Finished` follows them.
"""

# No "from __future__ import annotations": dbus-fast reads "-> None" as no reply value
# only when the annotation is the real None.


import asyncio
import time

from dbus_fast import PropertyAccess
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_property, method, signal

from oseprovd.bus import guard
from oseprovd.bus.convert import to_dbus
from oseprovd.bus.guard import BusContext, authorize, exported
from oseprovd.bus.names import IFACE_JOB, Action, job_path
from oseprovd.jobs import JobManager
from oseprovd.store.jobs import JobRecord

MIN_INTERVAL = 0.1  # seconds between two PropertiesChanged of one job (10 per second)

# Engine field -> the D-Bus properties it shows in.
_FIELD_PROPS = {
    "state": ("State",), "progress": ("Progress",), "status_text": ("StatusText",),
    "started": ("Started",), "finished": ("Finished",), "result": ("Result",),
    "error": ("Error",),
}


def _usec(ts: float | None) -> int:
    return int(ts * 1_000_000) if ts else 0


class JobInterface(ServiceInterface):
    def __init__(self, ctx: BusContext, manager: JobManager, job: JobRecord) -> None:
        super().__init__(IFACE_JOB)
        self.ctx = ctx
        self._manager = manager
        self.job = job
        self._dirty: set[str] = set()
        self._last_emit = 0.0
        self._timer: asyncio.Handle | None = None
        self._finish_pending = False

    @dbus_property(access=PropertyAccess.READ)
    def Id(self) -> "t":
        return self.job.id

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> "s":
        return self.job.state.value

    @dbus_property(access=PropertyAccess.READ)
    def Progress(self) -> "d":
        return self.job.progress

    @dbus_property(access=PropertyAccess.READ)
    def StatusText(self) -> "s":
        return self.job.status_text

    @dbus_property(access=PropertyAccess.READ)
    def Operation(self) -> "s":
        return self.job.operation

    @dbus_property(access=PropertyAccess.READ)
    def CallerUid(self) -> "u":
        return self.job.caller_uid

    @dbus_property(access=PropertyAccess.READ)
    def Created(self) -> "t":
        return _usec(self.job.created)

    @dbus_property(access=PropertyAccess.READ)
    def Started(self) -> "t":
        return _usec(self.job.started)

    @dbus_property(access=PropertyAccess.READ)
    def Finished(self) -> "t":
        return _usec(self.job.finished)

    @dbus_property(access=PropertyAccess.READ)
    def Result(self) -> "a{sv}":
        return to_dbus(self.job.result)

    @dbus_property(access=PropertyAccess.READ)
    def Error(self) -> "(ss)":
        return [self.job.error_name, self.job.error_message]

    @method()
    @exported(Action.JOB_CANCEL_ANY)
    async def Cancel(self) -> None:
        who = await guard.caller()
        # The one who started a job may cancel it; anyone else needs cancel-any.
        await authorize(polkit=who.uid != self.job.caller_uid)
        self._manager.cancel(self.job.id)

    @signal(name="Finished")
    def finished_signal(self) -> "s":
        return self.job.state.value

    # --- throttled change notification -------------------------------------------------

    def changed(self, fields: set[str]) -> None:
        for f in fields:
            self._dirty.update(_FIELD_PROPS.get(f, ()))
        self._schedule()

    def finish(self) -> None:
        # The end is not throttled: the window limits progress chatter, and a client
        # waiting for Finished must not wait it out (every short job would report at
        # least 100 ms late). This adds at most one PropertiesChanged per job.
        self._finish_pending = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        wait = self._last_emit + MIN_INTERVAL - time.monotonic()
        loop = asyncio.get_running_loop()
        if wait <= 0:
            self._timer = loop.call_soon(self._flush)
        else:
            self._timer = loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._dirty:
            props = {name: getattr(self, name) for name in sorted(self._dirty)}
            self._dirty.clear()
            self.emit_properties_changed(props)
            self._last_emit = time.monotonic()
        if self._finish_pending:
            self._finish_pending = False
            self.finished_signal()


class JobExporter:
    """Exports a Job1 object for each job the manager knows of (listener of JobManager)."""

    def __init__(self, bus: MessageBus, ctx: BusContext, manager: JobManager) -> None:
        self._bus = bus
        self._ctx = ctx
        self._manager = manager
        # A finished job's object stays a while, so a client that looks late still reads
        # its Result; then it goes: each costs ~6 KB, and a daemon runs thousands of jobs.
        self._linger = ctx.limits.finished_job_linger_seconds
        self._max_finished = ctx.limits.max_finished_job_objects
        self._objects: dict[int, JobInterface] = {}
        self._finished: dict[int, asyncio.TimerHandle] = {}  # oldest first

    def export_existing(self) -> None:
        """At start every job is over (recovery marked the running ones interrupted):
        the newest get an object for the usual while, like any job that just ended."""
        for job in reversed(self._manager.list_jobs(limit=self._max_finished)):
            self.job_created(job)
            self._retire_later(job.id)

    def interfaces(self) -> list[JobInterface]:
        return list(self._objects.values())

    def job_created(self, job: JobRecord) -> None:
        iface = JobInterface(self._ctx, self._manager, job)
        guard.check_declarations([iface])
        self._bus.export(job_path(job.id), iface)
        self._objects[job.id] = iface

    def job_changed(self, job: JobRecord, fields: set[str]) -> None:
        if (iface := self._objects.get(job.id)) is not None:
            iface.job = job
            iface.changed(fields)

    def job_finished(self, job: JobRecord) -> None:
        if (iface := self._objects.get(job.id)) is not None:
            iface.finish()
            self._retire_later(job.id)

    def _retire_later(self, job_id: int) -> None:
        loop = asyncio.get_running_loop()
        self._finished[job_id] = loop.call_later(self._linger, self._retire, job_id)
        while len(self._finished) > self._max_finished:
            self._retire(next(iter(self._finished)))

    def _retire(self, job_id: int) -> None:
        if (timer := self._finished.pop(job_id, None)) is not None:
            timer.cancel()
        if (iface := self._objects.pop(job_id, None)) is not None:
            iface.close()
            self._bus.unexport(job_path(job_id), iface)
