"""The composition root: builds the store, engines and bus objects, runs until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
import time

from dbus_fast import BusType, Message, MessageType, NameFlag, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface
from pydantic import BaseModel

from oseprovd import __version__
from oseprovd.bus import guard, patient_writer
from oseprovd.bus.auth import PolkitAuthorizer
from oseprovd.bus.caller import CallerResolver
from oseprovd.bus.discovery import DiscoveryInterface
from oseprovd.bus.guard import BusContext, TokenBuckets
from oseprovd.bus.job import JobExporter
from oseprovd.bus.manager import ManagerInterface
from oseprovd.bus.names import (
    BUS_NAME,
    DBUS_BUS_NAME,
    DBUS_IFACE,
    DBUS_PATH,
    ROOT_PATH,
    SERVICE_PATHS,
)
from oseprovd.bus.namewatch import NameWatch
from oseprovd.bus.reset import ResetInterface
from oseprovd.bus.snapshots import SnapshotsInterface
from oseprovd.bus.systemd_units import SystemdUnitStates
from oseprovd.bus.testing import TEST_PATH, TestInterface
from oseprovd.bus.tuning import TuningInterface
from oseprovd.bus.workflows import WorkflowsInterface
from oseprovd.config import Limits, Settings
from oseprovd.discovery import DiscoveryCache, DiscoveryEngine, SystemRoots
from oseprovd.discovery.registry import CollectorSpec
from oseprovd.engines import reset_engine, snapshot_engine
from oseprovd.jobs import JobManager
from oseprovd.log import MSG_READY, MSG_STARTED, MSG_STOPPING
from oseprovd.notify import notify, watchdog_interval, watchdog_loop
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.timer import retention_timer
from oseprovd.store.audit import AuditRepository
from oseprovd.store.db import Store
from oseprovd.store.jobs import JobRecord, JobRepository
from oseprovd.store.reports import ReportRepository
from oseprovd.store.snapshots import DiffPages
from oseprovd.system.memory import limit_malloc_arenas, release_free_memory
from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.bench import Benchmarks, FileBenchmarkStore
from oseprovd.tuning.engine import TuningEngine
from oseprovd.tuning.facts import MachineFacts, detect_power_managers
from oseprovd.tuning.fromdiscovery import FACTS_SUBSET, machine_facts_from_report
from oseprovd.tuning.journal import FileJournal
from oseprovd.tuning.network import ModprobeLoader
from oseprovd.tuning.profiles import ProfileCatalog
from oseprovd.tuning.roots import TuningRoots
from oseprovd.workflows.loader import WorkflowCatalog
from oseprovd.workflows.runner import RunStore, WorkflowRunner

log = logging.getLogger(__name__)

SHUTDOWN_JOB_GRACE = 5.0  # seconds for running jobs to reach a checkpoint on SIGTERM


async def _disconnected(bus: MessageBus) -> None:
    await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]


class StatusLine:
    """Keeps systemd's STATUS= line current: `systemctl status oseprovd` shows the jobs."""

    def __init__(self, jobs: JobManager) -> None:
        self._jobs = jobs

    def _update(self) -> None:
        n = self._jobs.running_count
        notify(f"STATUS=Ready; {n} job{'s' if n != 1 else ''} running")

    def job_created(self, job: JobRecord) -> None:
        self._update()

    def job_changed(self, job: JobRecord, fields: set[str]) -> None:
        pass

    def job_finished(self, job: JobRecord) -> None:
        self._update()


def discovery_engine(s: Settings) -> DiscoveryEngine:
    """The discovery engine over this daemon's roots (tuning's machine facts come from
    it; one DiscoveryCache over it can serve Discovery1 too)."""
    return DiscoveryEngine(SystemRoots(target=s.root, proc=s.proc_root, sys=s.sys_root))


def tuning_engine(s: Settings) -> TuningEngine:
    """The tuning engine over this daemon's roots; also used by --apply-tuning at boot."""
    roots = TuningRoots(TargetRoot(s.proc_root), TargetRoot(s.sys_root), TargetRoot(s.root))
    engine = TuningEngine(
        roots, FileJournal(s.state_dir / "tuning.journal"),
        ProfileCatalog(extra_dir=s.root / "etc/ose/tuning-profiles.d"), ModprobeLoader())
    result = engine.recover()
    if result.action != "none":
        log.warning("tuning: finished what a stopped daemon left: %s (%s)", result.action,
                    result.profile)
    return engine


def apply_tuning_at_boot(s: Settings) -> int:
    """`oseprovd --apply-tuning`: re-apply the chosen profile early at boot, without the
    bus (oseprovd-tuning.service runs before D-Bus is up)."""
    engine = tuning_engine(s)
    profile = engine.active_profile
    if profile is None:
        print("oseprovd: no tuning profile is active; nothing to apply")
        return 0
    # No bus yet: other power managers are known by their pid files only.
    report = discovery_engine(s).collect_sync(FACTS_SUBSET)
    managers = detect_power_managers([], TargetRoot(s.root), TargetRoot(s.proc_root))
    result = engine.apply(profile, machine_facts_from_report(report, managers))
    changed = sum(1 for o in result.outcomes if o.status == "changed")
    failed = [o.knob for o in result.outcomes if o.status in ("failed", "did-not-take")]
    print(f"oseprovd: tuning profile {profile} applied: {changed} values set"
          + (f"; did not take: {', '.join(failed)}" if failed else ""))
    return 0 if result.complete else 1


def build_tuning(s: Settings, ctx: BusContext, jobs: JobManager, names: NameWatch,
                 bus: MessageBus, discovery: DiscoveryCache | None = None) -> TuningInterface:
    """The Tuning1 object; its machine facts come from `discovery` (a cache shared with
    Discovery1 when given, else one of its own)."""
    engine = tuning_engine(s)
    cache = discovery or DiscoveryCache(discovery_engine(s))
    target, proc = TargetRoot(s.root), TargetRoot(s.proc_root)
    bench_dir = s.state_dir / "benchmarks"
    bench_dir.mkdir(mode=0o700, exist_ok=True)
    benchmarks = Benchmarks(FileBenchmarkStore(bench_dir), s.state_dir)

    async def facts() -> MachineFacts:
        # Power managers are found by their names on the bus, asked at the time.
        reply = await bus.call(Message(destination=DBUS_BUS_NAME, path=DBUS_PATH,
                                       interface=DBUS_IFACE, member="ListNames"))
        owned = list(reply.body[0]) if reply and reply.message_type == MessageType.METHOD_RETURN \
            else []
        managers = await asyncio.to_thread(detect_power_managers, owned, target, proc)
        return machine_facts_from_report(await cache.get(FACTS_SUBSET), managers)

    return TuningInterface(ctx, engine, benchmarks, jobs, names, facts)


def _hang(roots: SystemRoots) -> BaseModel:
    threading.Event().wait()  # never returns: a collector stuck in the kernel
    raise AssertionError("unreachable")


# With --test-interface only: a collector that never answers, so the suite can show
# that a stuck collector does not hang a scan of the real daemon.
TEST_HANG = CollectorSpec("test_hang", _hang, 60.0, in_all=False)


def build_discovery(s: Settings, ctx: BusContext, jobs: JobManager,
                    store: Store, bus: MessageBus | None = None) -> DiscoveryInterface:
    """The Discovery1 object over one DiscoveryCache, which Tuning1 shares for its facts.
    With `bus` and the live system as the target, units' states come from systemd."""
    engine = discovery_engine(s)
    if bus is not None and engine.roots.is_live:
        engine = DiscoveryEngine(engine.roots, engine.specs,
                                 unit_states=SystemdUnitStates(bus, asyncio.get_running_loop()))
    if s.test_interface:
        engine = DiscoveryEngine(engine.roots, (*engine.specs, TEST_HANG))
    cache = DiscoveryCache(engine, ttl=s.discovery.cache_ttl_seconds)
    reports = ReportRepository(store, keep=s.discovery.keep_reports)
    iface = DiscoveryInterface(ctx, cache, reports, jobs)
    iface.watch_hotplug()
    return iface


async def build_snapshots(engine: SnapshotEngine, ctx: BusContext, jobs: JobManager,
                          store: Store, names: NameWatch) -> SnapshotsInterface:
    """Snapshots1; browse mounts a killed daemon left (outside a private mount
    namespace) are taken away first."""
    iface = SnapshotsInterface(ctx, engine, jobs, DiffPages(store), names)
    iface.attach(asyncio.get_running_loop())
    await _release_mounts(iface)
    return iface


def build_reset(s: Settings, snapshots: SnapshotEngine, ctx: BusContext,
                jobs: JobManager) -> ResetInterface:
    """The Reset1 object over the reset engine, which gets the one snapshot engine for
    its rollback points. Executions a killed daemon left are marked interrupted first:
    they wait for `osectl reset resume|rollback` (or `osectl recovery`)."""
    engine = reset_engine(s, snapshots)
    for record in engine.interrupted():
        log.warning("reset: execution %s of plan %s was interrupted; resume or roll it "
                    "back (osectl reset resume|rollback %s)", record.id, record.plan,
                    record.id, extra={"OSE_RESET_EXECUTION": record.id})
    return ResetInterface(ctx, engine, jobs)


def build_workflows(s: Settings, ctx: BusContext, jobs: JobManager, reset: ResetInterface,
                    tuning: TuningInterface, snapshots: SnapshotEngine) -> WorkflowsInterface:
    """The Workflows1 object over the same engines as Reset1 and Tuning1 (their locks
    keep one change at a time), runs recorded in <state>/workflows."""
    runner = WorkflowRunner(RunStore(s.state_dir / "workflows"), reset.engine,
                            tuning.engine, snapshots)
    for run in runner.recover():
        log.warning("workflows: run %s of %s was stopped (%s); roll it back with "
                    "`osectl workflow rollback %s`", run.id, run.workflow, run.state, run.id)
    catalog = WorkflowCatalog(s.root / "etc/ose/workflows.d")
    return WorkflowsInterface(ctx, catalog, runner, jobs, tuning)


async def bus_context(bus: MessageBus, store: Store,
                      limits: Limits) -> tuple[BusContext, NameWatch]:
    """What every handler needs: who calls, polkit, audit, limits; and the name watch."""
    bus.add_message_handler(guard.make_message_handler(limits))
    resolver = CallerResolver(bus)
    names = NameWatch(bus)
    names.on_vanished(resolver.forget)
    await names.start()
    ctx = BusContext(
        resolver=resolver, authorizer=PolkitAuthorizer(bus, limits),
        audit=AuditRepository(store), limits=limits,
        buckets=TokenBuckets(limits.rate_per_uid_per_second, limits.rate_burst),
    )
    return ctx, names


class StartupError(Exception):
    """The daemon cannot start; the message is the one line the user sees."""


async def connect(bus: str) -> MessageBus:
    if bus == "system":
        mb = MessageBus(bus_type=BusType.SYSTEM)
    elif bus == "session":
        mb = MessageBus(bus_type=BusType.SESSION)
    else:
        mb = MessageBus(bus_address=bus)
    try:
        await mb.connect()
    except (OSError, EOFError, ValueError) as exc:
        raise StartupError(f"cannot connect to the {bus} bus: {exc}") from None
    patient_writer.install(mb)
    return mb


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = asyncio.Event()
        # The snapshot engine, for the engines built after it (see snapshot_engine()).
        self.snapshots: SnapshotEngine | None = None

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        s = self.settings
        log.info("oseprovd %s starting (root %s, state %s)", __version__, s.root, s.state_dir,
                 extra={"MESSAGE_ID": MSG_STARTED})
        store = Store(s.state_dir)
        jobs = JobManager(JobRepository(store))
        interrupted = jobs.recover()
        bus = await connect(s.bus)
        try:
            return await self._serve(bus, store, jobs, interrupted)
        finally:
            bus.disconnect()
            store.close()

    async def _serve(self, bus: MessageBus, store: Store, jobs: JobManager,
                     interrupted: list[int]) -> int:
        s = self.settings
        ctx, names = await bus_context(bus, store, s.limits)
        exporter = JobExporter(bus, ctx, jobs)
        jobs.add_listener(exporter)
        jobs.add_listener(StatusLine(jobs))
        # First: its recovery finishes or reverts what a killed daemon left before any
        # other engine may change the system; then the engines that call it (pre_post)
        # get it in their constructors.
        snapshots = self.snapshots = snapshot_engine(s, store)
        discovery = build_discovery(s, ctx, jobs, store, bus)
        tuning = build_tuning(s, ctx, jobs, names, bus, discovery=discovery.cache)
        snapshots_iface = await build_snapshots(snapshots, ctx, jobs, store, names)
        reset = build_reset(s, snapshots, ctx, jobs)
        workflows = build_workflows(s, ctx, jobs, reset, tuning, snapshots)
        services: list[ServiceInterface] = [discovery, tuning, snapshots_iface, reset,
                                            workflows]
        features = sorted(iface.name for iface in services)
        exported: list[tuple[str, ServiceInterface]] = [
            (ROOT_PATH, ManagerInterface(ctx, jobs, store, names, str(s.root), features)),
            *((SERVICE_PATHS[iface.name], iface) for iface in services),
        ]
        if s.test_interface:
            exported.append((TEST_PATH, TestInterface(ctx, jobs)))
        # Secure by default: refuse to start with a method that declares no policy.
        guard.check_declarations([iface for _, iface in exported])
        for path, iface in exported:
            bus.export(path, iface)
        exporter.export_existing()
        await tuning.refresh_recommended()
        gc.collect()
        release_free_memory()  # start-up's garbage (first facts, schemas), given back

        reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            raise StartupError(f"the name {BUS_NAME} is already owned by another process "
                               "(is oseprovd already running?)")
        # Everything built so far lives as long as the daemon: keep it out of the cyclic
        # collector's way, which otherwise rescans it on every full collection.
        gc.freeze()
        notify("READY=1\nSTATUS=Ready; 0 jobs running")
        log.info("ready on the bus as %s%s", BUS_NAME,
                 f"; jobs {interrupted} were interrupted" if interrupted else "",
                 extra={"MESSAGE_ID": MSG_READY})
        watchdog = None
        timer = (asyncio.get_running_loop().create_task(
            retention_timer(snapshots, s.snapshot_timer_seconds))
            if s.snapshot_timer_seconds > 0 else None)
        if (interval := watchdog_interval()) is not None:
            watchdog = asyncio.get_running_loop().create_task(watchdog_loop(interval))

        disconnected = asyncio.ensure_future(_disconnected(bus))
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait([disconnected, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if disconnected.done():
            log.error("lost the connection to the bus")
            await _stop_work(jobs, snapshots_iface, reset)
            return 1
        disconnected.cancel()

        started = time.monotonic()
        notify("STOPPING=1\nSTATUS=Stopping: waiting for running jobs to reach a checkpoint")
        log.info("stopping", extra={"MESSAGE_ID": MSG_STOPPING})
        for task in (watchdog, timer, discovery.hotplug):
            if task is not None:
                task.cancel()
        await _stop_work(jobs, snapshots_iface, reset)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bus.release_name(BUS_NAME), 2)
        log.info("stopped in %.2f s", time.monotonic() - started)
        return 0


async def _stop_work(jobs: JobManager, snapshots: SnapshotsInterface,
                     reset: ResetInterface) -> None:
    """Running jobs reach a checkpoint (a reset execution stops between batches and is
    recorded interrupted); then browse mounts go and the reset walkers end."""
    await jobs.shutdown(SHUTDOWN_JOB_GRACE)
    await _release_mounts(snapshots)
    reset.close()


async def _release_mounts(snapshots: SnapshotsInterface) -> None:
    try:
        await snapshots.release_mounts()
    except Exception:  # a stop must go on; the next start tries again
        log.exception("snapshots: releasing browse mounts failed")


def run(settings: Settings) -> int:
    limit_malloc_arenas()  # before any thread starts (see system/memory.py)

    async def main() -> int:
        daemon = Daemon(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        return await daemon.run()

    return asyncio.run(main())
