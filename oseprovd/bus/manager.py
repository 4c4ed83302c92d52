"""org.ose.Manager1 at the root object: status, jobs, audit log."""


import time
from typing import Any

from dbus_fast import PropertyAccess, Variant
from dbus_fast.service import ServiceInterface, dbus_property, method

from oseprovd import __version__
from oseprovd.bus.convert import to_dbus
from oseprovd.bus.guard import BusContext, authorize, exported
from oseprovd.bus.models import AuditQuery, JobId, ListJobsOptions
from oseprovd.bus.names import IFACE_MANAGER, Action, job_path
from oseprovd.bus.namewatch import NameWatch
from oseprovd.jobs import JobManager
from oseprovd.store.db import Store
from oseprovd.store.jobs import JobRecord


def job_record(job: JobRecord) -> dict[str, Any]:
    data = job.model_dump(mode="json")
    data["path"] = job_path(job.id)
    return data


class ManagerInterface(ServiceInterface):
    def __init__(self, ctx: BusContext, jobs: JobManager, store: Store, names: NameWatch,
                 target_root: str, features: list[str]) -> None:
        super().__init__(IFACE_MANAGER)
        self.ctx = ctx
        self._jobs = jobs
        self._store = store
        self._names = names
        self._root = target_root
        self._features = features
        self._started = time.monotonic()
        self._usage = (0.0, 0)  # (when measured, bytes): a status poller need not rescan
        self._status_fixed: dict[str, Variant] | None = None

    def _state_dir_bytes(self) -> int:
        now = time.monotonic()
        if now - self._usage[0] > 1.0:
            self._usage = (now, self._store.disk_usage())
        return self._usage[1]

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> "s":
        return __version__

    @dbus_property(access=PropertyAccess.READ)
    def Features(self) -> "as":
        return self._features

    @dbus_property(access=PropertyAccess.READ)
    def TargetRoot(self) -> "s":
        return self._root

    @method()
    @exported(public=True)
    def GetStatus(self) -> "a{sv}":
        if self._status_fixed is None:
            # GetStatus is what pollers call most: its fixed fields are converted once.
            self._status_fixed = to_dbus({
                "version": __version__, "state_dir": str(self._store.state_dir),
                "target_root": self._root, "features": self._features})
        status = dict(self._status_fixed)
        status["uptime_seconds"] = Variant("d", round(time.monotonic() - self._started, 3))
        status["jobs_running"] = Variant("x", self._jobs.running_count)
        status["state_dir_bytes"] = Variant("x", self._state_dir_bytes())
        status["polkit_reachable"] = Variant("b", bool(self._names.polkit_reachable))
        return status

    @method()
    @exported(public=True)
    def ListJobs(self, options: "a{sv}") -> "aa{sv}":
        req = ListJobsOptions.from_dbus(options)
        return [to_dbus(job_record(j)) for j in self._jobs.list_jobs(req.state, req.limit)]

    @method()
    @exported(public=True)
    def GetJob(self, job_id: "t") -> "a{sv}":
        req = JobId(id=job_id)
        return to_dbus(job_record(self._jobs.get(req.id)))

    @method()
    @exported(Action.AUDIT_READ)
    async def GetAuditLog(self, options: "a{sv}") -> "aa{sv}":
        req = AuditQuery.from_dbus(options)
        await authorize(req)
        return [to_dbus(e) for e in self.ctx.audit.recent(req.since, req.limit)]
