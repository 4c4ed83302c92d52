"""org.ose.Discovery1 at /org/ose/Provisioning1/Discovery: what this machine is, from a
cache (Get*), as stored reports (Scan, GetReport, ListReports, DiffReports), as a
performance profile (Profile), and as hot-plug signals (HardwareChanged)."""

# No "from __future__ import annotations": dbus-fast reads the annotations as signatures.

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from dbus_fast import Variant
from dbus_fast.service import ServiceInterface, method, signal
from pydantic import BaseModel, Field

from oseprovd.bus.convert import to_dbus, to_variant
from oseprovd.bus.guard import BusContext, authorize, exported, permitted
from oseprovd.bus.models import Options
from oseprovd.bus.names import IFACE_DISCOVERY, Action, job_path
from oseprovd.discovery import (
    DiscoveryCache,
    DiscoveryEngine,
    Report,
    diff_reports,
    performance,
    redact,
)
from oseprovd.discovery.cache import SUBSYSTEM_COLLECTORS
from oseprovd.errors import Cancelled, InvalidArguments, NotFound
from oseprovd.jobs import JobContext, JobManager
from oseprovd.store.reports import ReportRepository
from oseprovd.system.memory import release_free_memory
from oseprovd.system.uevent import UEvent, UEventMonitor

log = logging.getLogger(__name__)

META = ("started_at", "finished_at", "duration_ms", "subset", "collectors", "outcomes")
REPORT_ID = re.compile(r"^[0-9a-f]{16}$")
MAX_SUBSETS = 64
MAX_SCAN_SECONDS = 3600.0

# What each Get* answers: groups or collectors, and nothing else (the minimal set that
# an Ansible-style subset always adds is excluded unless asked for).
GET_SUBSETS: dict[str, tuple[str, ...]] = {
    "hardware": ("hardware",),
    "software": ("software",),
    "network": ("networking",),
    "cloud": ("cloud", "virtualization"),
    "containers": ("containers", "virtualization"),
    "databases": ("databases",),
    "services": ("services",),
    "security": ("security",),
}


def only(engine: DiscoveryEngine, wanted: Sequence[str]) -> list[str]:
    """A subset naming exactly `wanted`: the minimal collectors it does not name are
    excluded one by one."""
    named = {member for w in wanted for member in engine.groups.get(w, (w,))}
    minimal = [s.name for s in engine.specs if s.minimal and s.name not in named]
    return [*wanted, *(f"!{m}" for m in minimal)]


class ScanOptions(Options):
    subsets: list[str] = Field(default_factory=lambda: ["all"], min_length=1,
                               max_length=MAX_SUBSETS)
    timeout: float | None = Field(None, gt=0, le=600)
    # Ask the detected provider's link-local metadata service who this instance is: the
    # only network traffic discovery ever sends, so only when asked for.
    cloud_metadata: bool = False


class DescribeOptions(Options):
    subsets: list[str] = Field(default_factory=lambda: ["all"], min_length=1,
                               max_length=MAX_SUBSETS)


class ProfileOptions(Options):
    seconds: float = Field(5.0, gt=0, le=performance.MAX_SECONDS)
    interval: float = Field(1.0, ge=0.05, le=60)
    top: int = Field(10, ge=1, le=100)


def plain(value: Any) -> Any:
    """JSON-shaped data without None anywhere (D-Bus has no null)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [plain(v) for v in value if v is not None]
    return value


def report_dbus(report: BaseModel, **extra: Any) -> dict[str, Any]:
    data = plain(report.model_dump(mode="json"))
    data.update(extra)
    return to_dbus(data)


def check_report_id(value: str) -> str:
    if not REPORT_ID.match(value):
        raise InvalidArguments("a report id is the 16 hex digits ListReports gives")
    return value


class DiscoveryInterface(ServiceInterface):
    def __init__(self, ctx: BusContext, cache: DiscoveryCache, reports: ReportRepository,
                 jobs: JobManager) -> None:
        super().__init__(IFACE_DISCOVERY)
        self.ctx = ctx
        self._cache = cache
        self._engine = cache.engine
        self._reports = reports
        self._jobs = jobs
        self.hotplug: asyncio.Task[None] | None = None
        self._subsets = {what: only(self._engine, wanted)
                         for what, wanted in GET_SUBSETS.items()}

    @property
    def cache(self) -> DiscoveryCache:
        """The cache behind Get*; Tuning1 reads its machine facts from the same one."""
        return self._cache

    # --- hot-plug ---------------------------------------------------------------------

    @signal()
    def HardwareChanged(self, subsystem: str, action: str, device: str) -> "sss":
        return [subsystem, action, device]

    def watch_hotplug(self) -> None:
        """Kernel uevents -> fresh cache entries and HardwareChanged (no udevd needed);
        from the daemon's loop, until `hotplug` is cancelled."""
        monitor = UEventMonitor(self.device_event)
        self.hotplug = asyncio.get_running_loop().create_task(monitor.run())

    def device_event(self, event: UEvent) -> None:
        """From the uevent monitor: drop the cached answers it made stale, then tell
        clients. Only subsystems discovery describes are signalled (not every bdi or
        workqueue event the kernel sends)."""
        if event.subsystem not in SUBSYSTEM_COLLECTORS:
            return
        stale = self._cache.device_event(event.subsystem)
        log.debug("hot-plug %s %s %s: dropped %s", event.subsystem, event.action,
                  event.device, stale)
        self.HardwareChanged(event.subsystem, event.action, event.device)

    # --- cached reads -------------------------------------------------------------------

    async def _cached(self, subset: Sequence[str]) -> Report:
        """The cache's answer; when collectors had to run for it (a fill, as heavy as a
        scan), their threads' freed memory goes back to the kernel as after a scan."""
        runs = self._cache.runs
        report = await self._cache.get(subset)
        if self._cache.runs != runs:
            release_free_memory()
        return report

    async def _get(self, what: str) -> dict[str, Any]:
        report = await self._cached(self._subsets[what])
        allowed = await permitted(Action.DISCOVERY_READ_SENSITIVE)
        answer = to_dbus(plain(report.model_dump(mode="json", include=set(META))))
        for name in report.collectors:
            section = getattr(report, name)
            if section is not None:
                answer[name] = self._section_variant(name, section, allowed)
        return answer

    def _section_variant(self, name: str, section: BaseModel, allowed: bool) -> Variant:
        """A section as a D-Bus value, converted once per cached answer: the cache hands
        out the same object until it refreshes it, and converting the package list
        costs far more than sending it. Kept with the cache entry, so it goes when the
        entry is refreshed."""
        def convert(model: BaseModel) -> Variant:
            return to_variant(plain((model if allowed else redact(model)).model_dump(
                mode="json")))

        return self._cache.derived(name, section, ("dbus", allowed), convert)

    def _section_json(self, name: str, section: BaseModel, allowed: bool) -> str:
        """A section as JSON text (sorted keys, no nulls), made once per cached answer
        like the D-Bus values above."""
        def serialize(model: BaseModel) -> str:
            return json.dumps(plain((model if allowed else redact(model)).model_dump(
                mode="json")), sort_keys=True)

        return self._cache.derived(name, section, ("json", allowed), serialize)

    @method()
    @exported(public=True)
    async def Describe(self, options: "a{sv}") -> "s":
        """Several sections in one answer, as one JSON object: what `osectl discover all
        --json`, the Ansible fact and a web page want in one go. The JSON text is the
        same data the typed Get* answer (collectors, outcomes, one object per section),
        made from the cache once per cached answer; decoding it is the C json module's
        work instead of a D-Bus decoder walking ~1000 dicts (hostnamed's Describe does
        the same)."""
        opts: DescribeOptions = DescribeOptions.from_dbus(options)
        names = self._engine.resolve(opts.subsets)  # InvalidArgs before polkit
        await authorize(opts, action=Action.DISCOVERY_AUDIT if "security" in names else None)
        report = await self._cached(opts.subsets)
        allowed = await permitted(Action.DISCOVERY_READ_SENSITIVE)
        parts = {
            "collectors": json.dumps(report.collectors),
            "outcomes": json.dumps(plain([o.model_dump(mode="json") for o in report.outcomes]),
                                   sort_keys=True),
        }
        for name in report.collectors:
            section = getattr(report, name)
            if section is not None:
                parts[name] = self._section_json(name, section, allowed)
        # What json.dumps(..., sort_keys=True) of the whole would give, without
        # serializing the cached sections again.
        return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in sorted(parts.items())) + "}"

    @method()
    @exported(public=True)
    async def GetHardware(self) -> "a{sv}":
        await authorize()
        return await self._get("hardware")

    @method()
    @exported(public=True)
    async def GetSoftware(self) -> "a{sv}":
        await authorize()
        return await self._get("software")

    @method()
    @exported(public=True)
    async def GetNetwork(self) -> "a{sv}":
        await authorize()
        return await self._get("network")

    @method()
    @exported(public=True)
    async def GetCloud(self) -> "a{sv}":
        await authorize()
        return await self._get("cloud")

    @method()
    @exported(public=True)
    async def GetContainers(self) -> "a{sv}":
        await authorize()
        return await self._get("containers")

    @method()
    @exported(public=True)
    async def GetDatabases(self) -> "a{sv}":
        await authorize()
        return await self._get("databases")

    @method()
    @exported(public=True)
    async def GetServices(self) -> "a{sv}":
        await authorize()
        return await self._get("services")

    @method()
    @exported(Action.DISCOVERY_AUDIT)
    async def GetSecurity(self) -> "a{sv}":
        await authorize()
        return await self._get("security")

    # --- scans and reports --------------------------------------------------------------

    @method()
    @exported(public=True, expensive=True)
    async def Scan(self, options: "a{sv}") -> "o":
        opts: ScanOptions = ScanOptions.from_dbus(options)
        names = self._engine.resolve(opts.subsets)  # InvalidArgs before polkit
        if opts.cloud_metadata and "cloud" not in names:
            raise InvalidArguments("cloud_metadata needs the cloud collector in the subsets")
        # The security audit walks the file system and shows weaknesses: its own action.
        who = await authorize(opts, action=Action.DISCOVERY_AUDIT
                              if "security" in names else None)
        return self._start_scan(who.uid, opts.subsets, names, opts.timeout, "discovery.scan",
                                opts.cloud_metadata)

    @method()
    @exported(public=True, expensive=True)
    async def ScanQuick(self) -> "o":
        who = await authorize()
        subset = ["min"]
        return self._start_scan(who.uid, subset, self._engine.resolve(subset), None,
                                "discovery.scan-quick")

    def _start_scan(self, uid: int, subset: list[str], names: Sequence[str],
                    timeout: float | None, operation: str, cloud_metadata: bool = False
                    ) -> str:
        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.0, f"running {len(names)} collectors")

            def progress(name: str, done: int, total: int) -> None:
                job.progress(done / total * 0.95, f"{name} done ({done}/{total})")

            # A scan answers fresh: drop the cached sections first; what it collects
            # then refreshes the cache, and a Get* meanwhile shares the same runs.
            self._cache.invalidate(names)
            scan = asyncio.ensure_future(self._cache.get(subset, timeout, progress=progress))
            # Job1.Cancel ends the scan at once, even while a collector is stuck; nothing
            # is stored. (The collectors still running finish into the cache.)
            cancel = asyncio.ensure_future(job.wait_cancelled(MAX_SCAN_SECONDS))
            await asyncio.wait({scan, cancel}, return_when=asyncio.FIRST_COMPLETED)
            if not scan.done():
                scan.cancel()
                raise Cancelled("the scan was cancelled; no report was stored")
            cancel.cancel()
            report = scan.result()
            job.progress(0.97, "storing the report")
            failed = [o.name for o in report.failed]
            duration_ms = report.duration_ms
            extra: dict[str, Any] = {}
            if cloud_metadata:
                job.progress(0.96, "asking the cloud metadata service")
                extra["cloud_metadata"] = await _ask_metadata(report, timeout)
            report_id = await asyncio.to_thread(
                self._reports.add, report.model_dump_json(), uid, list(subset),
                list(report.collectors), failed, report.duration_ms)
            del report
            release_free_memory()  # the collector threads' arenas, back to the kernel
            return {"report": report_id, "collectors": list(names), "failed": failed,
                    "duration_ms": duration_ms, **extra}

        job = self._jobs.start(operation, uid, run)
        return job_path(job.id)

    def _load(self, report_id: str) -> Report:
        data = self._reports.data(check_report_id(report_id))
        if data is None:
            raise NotFound(f"no report {report_id}; see `osectl report list`")
        return Report.model_validate_json(data)

    @method()
    @exported(public=True)
    async def GetReport(self, id: "s") -> "a{sv}":
        await authorize()
        report = await asyncio.to_thread(self._load, id)
        if not await permitted(Action.DISCOVERY_READ_SENSITIVE):
            report = redact(report)
        return report_dbus(report, id=id)

    @method()
    @exported(public=True)
    def ListReports(self) -> "aa{sv}":
        return [to_dbus(s) for s in self._reports.summaries()]

    @method()
    @exported(public=True)
    async def DiffReports(self, a: "s", b: "s") -> "a{sv}":
        check_report_id(a)
        check_report_id(b)
        await authorize()
        old, new = await asyncio.to_thread(lambda: (self._load(a), self._load(b)))
        if not await permitted(Action.DISCOVERY_READ_SENSITIVE):
            old, new = redact(old), redact(new)  # a changed serial would show otherwise
        diff = await asyncio.to_thread(diff_reports, old, new)
        return report_dbus(diff, a=a, b=b)

    # --- performance --------------------------------------------------------------------

    @method()
    @exported(public=True, expensive=True)
    async def Profile(self, options: "a{sv}") -> "o":
        opts: ProfileOptions = ProfileOptions.from_dbus(options)
        if opts.interval > opts.seconds:
            raise InvalidArguments("interval must not be longer than seconds")
        who = await authorize(opts)
        roots = self._engine.roots

        async def run(job: JobContext) -> dict[str, Any]:
            def progress(fraction: float) -> None:
                job.progress(fraction, f"sampling ({opts.seconds:g} s)")
                job.check_cancelled()

            result = await performance.profile(roots, opts.seconds, opts.interval, opts.top,
                                               progress=progress)
            return dict(plain(result.model_dump(mode="json")))

        job = self._jobs.start("discovery.profile", who.uid, run)
        return job_path(job.id)


async def _ask_metadata(report: Report, timeout: float | None) -> dict[str, Any]:
    """The metadata service of the provider the DMI table names (found or maybe); a
    machine with no such evidence sends nothing."""
    # Imported when asked: urllib.request and http.client cost the daemon ~3 MiB.
    from oseprovd.discovery import metadata

    cloud = report.cloud
    if cloud is None or cloud.provider is None or cloud.status == "none":
        return {"provider": "", "reachable": False,
                "error": "no cloud provider detected from local evidence; nothing was sent"}
    wait = min(timeout or metadata.DEFAULT_TIMEOUT, 2.0)
    result = await asyncio.to_thread(metadata.probe_metadata, cloud.provider, wait)
    return dict(plain(result.model_dump(mode="json")))
