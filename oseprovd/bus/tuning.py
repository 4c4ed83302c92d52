"""org.ose.Tuning1 at /org/ose/Provisioning1/Tuning: profiles, apply, verify, revert,
holds and before/after benchmarks, over the tuning engine."""

# No "from __future__ import annotations": dbus-fast reads "-> None" as no reply value
# only when the annotation is the real None.

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from dbus_fast import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property, method, signal
from pydantic import Field

from oseprovd.bus import guard
from oseprovd.bus.convert import to_dbus
from oseprovd.bus.guard import BusContext, authorize, exported
from oseprovd.bus.models import Options
from oseprovd.bus.names import IFACE_TUNING, Action, job_path
from oseprovd.bus.namewatch import NameWatch
from oseprovd.errors import InvalidArguments
from oseprovd.jobs import JobContext, JobManager
from oseprovd.tuning.bench import Benchmarks
from oseprovd.tuning.engine import TuningEngine
from oseprovd.tuning.facts import MachineFacts

log = logging.getLogger(__name__)

FactsSource = Callable[[], Awaitable[MachineFacts]]


class ApplyOptions(Options):
    dry_run: bool = False
    skip_power: bool = False
    # The digest of a plan shown before (GetProfile): apply only that plan.
    digest: str = Field("", max_length=64, pattern=r"^[0-9a-f]*$")


class BenchmarkOptions(Options):
    runs: int = Field(5, ge=1, le=50)


class HoldRequest(Options):
    profile: str = Field(max_length=64)
    reason: str = Field(max_length=200)
    app_id: str = Field(max_length=200)


class TuningInterface(ServiceInterface):
    def __init__(self, ctx: BusContext, engine: TuningEngine, benchmarks: Benchmarks,
                 jobs: JobManager, names: NameWatch, facts: FactsSource) -> None:
        super().__init__(IFACE_TUNING)
        self.ctx = ctx
        self._engine = engine
        self._bench = benchmarks
        self._jobs = jobs
        self._facts = facts
        self._recommended = ""
        # Cookie -> the unique name that holds it: a hold ends when its caller leaves.
        self._hold_owner: dict[int, tuple[str, int]] = {}
        names.on_vanished(self._caller_left)

    @property
    def engine(self) -> TuningEngine:
        return self._engine

    async def machine_facts(self) -> MachineFacts:
        return await self._facts()

    def changed_elsewhere(self) -> None:
        """Another service (a workflow) applied or reverted a profile."""
        self._changed()

    async def refresh_recommended(self) -> None:
        rec = await asyncio.to_thread(self._engine.recommend, await self._facts())
        self._recommended = rec.profile

    # --- properties ---------------------------------------------------------------------

    @dbus_property(access=PropertyAccess.READ)
    def ActiveProfile(self) -> "s":
        return self._engine.active_profile or ""

    @dbus_property(access=PropertyAccess.READ)
    def Recommended(self) -> "s":
        return self._recommended

    @signal()
    def ProfileChanged(self) -> "s":
        return self._engine.active_profile or ""

    def _changed(self) -> None:
        self.emit_properties_changed({"ActiveProfile": self._engine.active_profile or ""})
        self.ProfileChanged()

    # --- reads (public) -----------------------------------------------------------------

    @method()
    @exported(public=True)
    def ListProfiles(self) -> "aa{sv}":
        active = self._engine.active_profile
        return [to_dbus({**p.model_dump(), "active": p.name == active,
                         "recommended": p.name == self._recommended})
                for p in self._engine.list_profiles()]

    @method()
    @exported(public=True)
    async def GetProfile(self, name: "s") -> "a{sv}":
        """The profile and what it would change on this machine, knob by knob."""
        info = self._engine.get_profile(name)
        plan = await asyncio.to_thread(self._engine.plan, name, await self._facts())
        return to_dbus({**info.model_dump(), "plan": plan})

    @method()
    @exported(public=True)
    async def Recommend(self) -> "a{sv}":
        rec = await asyncio.to_thread(self._engine.recommend, await self._facts())
        self._recommended = rec.profile
        return to_dbus(rec)

    @method()
    @exported(public=True)
    async def Verify(self) -> "a{sv}":
        return to_dbus(await asyncio.to_thread(self._engine.verify))

    @method()
    @exported(public=True)
    def ListBenchmarks(self) -> "aa{sv}":
        return [to_dbus(r) for r in self._bench.store.results()]

    @method()
    @exported(public=True)
    def CompareBenchmarks(self, before: "s", after: "s") -> "a{sv}":
        return to_dbus(self._bench.compare(_bench_id(before), _bench_id(after)))

    # --- changes ------------------------------------------------------------------------

    @method()
    @exported(Action.TUNING_APPLY, expensive=True)
    async def Apply(self, profile: "s", options: "a{sv}") -> "o":
        opts: ApplyOptions = ApplyOptions.from_dbus(options)
        self._engine.get_profile(profile)  # NotFound / InvalidArgs before asking polkit
        who = await authorize(opts)
        # The facts (a bus round trip, a few file reads) are gathered while the job is
        # created and the call audited, not before.
        facts = asyncio.ensure_future(self._facts())

        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.1, f"applying {profile}")
            result = await asyncio.to_thread(
                self._engine.apply, profile, await facts, opts.dry_run, opts.skip_power,
                opts.digest or None)
            if not opts.dry_run:
                self._changed()
            return result.model_dump(mode="json")

        try:
            job = self._jobs.start("tuning.apply", who.uid, run, exclusive="system")
        except BaseException:
            facts.cancel()
            raise
        return job_path(job.id)

    @method()
    @exported(Action.TUNING_REVERT, expensive=True)
    async def Revert(self) -> "o":
        who = await authorize()

        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.1, "restoring the original values")
            result = await asyncio.to_thread(self._engine.revert)
            self._changed()
            return result.model_dump(mode="json")

        job = self._jobs.start("tuning.revert", who.uid, run, exclusive="system")
        return job_path(job.id)

    @method()
    @exported(Action.TUNING_HOLD, expensive=True)
    async def Hold(self, profile: "s", reason: "s", app_id: "s") -> "u":
        req = HoldRequest(profile=profile, reason=reason, app_id=app_id)
        self._engine.get_profile(req.profile)
        who = await authorize(req)
        info = await asyncio.to_thread(self._engine.hold, req.profile, req.reason,
                                       req.app_id, await self._facts())
        self._hold_owner[info.cookie] = (who.unique_name, who.uid)
        self._changed()
        return info.cookie

    @method()
    @exported(Action.TUNING_HOLD)
    async def Release(self, cookie: "u") -> None:
        owner = self._hold_owner.get(cookie)
        who = await guard.caller()
        # The holder may release its own hold; anyone else needs the hold action.
        await authorize(polkit=owner is None or owner[1] != who.uid)
        await self._release(cookie)

    async def _release(self, cookie: int) -> None:
        self._hold_owner.pop(cookie, None)
        await asyncio.to_thread(self._engine.release, cookie, await self._facts())
        self._changed()

    def _caller_left(self, unique_name: str) -> None:
        for cookie, (owner, _) in list(self._hold_owner.items()):
            if owner == unique_name:
                task = asyncio.get_running_loop().create_task(self._release(cookie))
                task.add_done_callback(_log_failure)

    @method()
    @exported(Action.TUNING_BENCHMARK, expensive=True)
    async def Benchmark(self, suite: "s", options: "a{sv}") -> "o":
        opts: BenchmarkOptions = BenchmarkOptions.from_dbus(options)
        if suite not in ("quick", "standard"):
            raise InvalidArguments("suite is 'quick' or 'standard'")
        who = await authorize(opts)
        profile = self._engine.active_profile

        async def run(job: JobContext) -> dict[str, Any]:
            cancel = threading.Event()
            loop = asyncio.get_running_loop()

            def progress(fraction: float, text: str) -> None:
                loop.call_soon_threadsafe(job.progress, fraction, text)

            watcher = loop.create_task(job.wait_cancelled(3600))
            watcher.add_done_callback(lambda _: cancel.set())
            try:
                result = await asyncio.to_thread(self._bench.run, suite, profile, opts.runs,
                                                 progress, cancel)
            finally:
                watcher.cancel()
            return {"id": result.id, "suite": result.suite, "profile": result.profile or ""}

        # Benchmarks measure the machine: nothing else that changes it may run meanwhile.
        job = self._jobs.start("tuning.benchmark", who.uid, run, exclusive="system")
        return job_path(job.id)


def _bench_id(value: str) -> str:
    if not (0 < len(value) <= 64 and value.isalnum()):
        raise InvalidArguments("a benchmark id is the hex string ListBenchmarks gives")
    return value


def _log_failure(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("releasing a hold failed", exc_info=task.exception())
