"""org.ose.Reset1 at /org/ose/Provisioning1/Reset: baseline, profiles, analyze, preview
(a plan whose items are read a page at a time), execute behind a rollback point,
roll back, resume, over the reset engine.

Who may see what:
- the baseline, the profiles and the executions (states, counts, no paths) are public;
- Analyze, Preview, GetPlan and GetPlanItems need `org.ose.reset.preview`: a plan names
  files in people's homes, and even the totals of a chosen selection tell whether a
  path exists;
- Execute and Resume need the action that the plan's content calls for (see
  `execute_action`); a dry run only needs the preview action (it changes nothing);
- Rollback needs `org.ose.reset.rollback`.
Job results are readable by anyone who can see the job, so they carry counts; the
paths an execution skipped are in GetExecution for callers holding the preview action.

The engine is synchronous: every call that touches the tree or the plan store runs in a
worker thread.
"""

# No "from __future__ import annotations": dbus-fast reads "-> None" as no reply value
# only when the annotation is the real None.

import asyncio
import logging
import os
from datetime import datetime
from typing import Any

from dbus_fast.service import ServiceInterface, method
from pydantic import Field, ValidationError

from oseprovd.bus import guard
from oseprovd.bus.convert import to_dbus
from oseprovd.bus.errors import describe_validation_error
from oseprovd.bus.guard import BusContext, authorize, exported
from oseprovd.bus.models import Options
from oseprovd.bus.names import IFACE_RESET, Action, job_path
from oseprovd.errors import InvalidArguments
from oseprovd.jobs import JobContext, JobManager
from oseprovd.reset.engine import (
    JobJournal,
    ResetEngine,
    check_execution_id,
    check_plan_id,
    entries_from_steps,
)
from oseprovd.reset.errors import DigestMismatch
from oseprovd.reset.models import (
    ExecuteOptions,
    ExecuteResult,
    ExecutionRecord,
    Plan,
    PlanItem,
    Selection,
)

log = logging.getLogger(__name__)

MAX_PAGE = 5000
MAX_ROWS = 2**63 - 1  # SQLite's integers are signed 64-bit
CLEAN_CLASSES = frozenset({"cache", "log", "temp"})
Strs = list[str]


class SelectionRequest(Options):
    """A Selection as it travels in an a{sv}: the engine's field names, lists of
    strings (see reset.models.Selection for their meaning)."""

    profile: str = Field("light", max_length=48)
    include_paths: Strs = Field(default_factory=list, max_length=256)
    exclude_paths: Strs = Field(default_factory=list, max_length=256)
    include_globs: Strs = Field(default_factory=list, max_length=256)
    exclude_globs: Strs = Field(default_factory=list, max_length=256)
    classes: Strs = Field(default_factory=list, max_length=6)
    exclude_classes: Strs = Field(default_factory=list, max_length=6)
    packages: Strs = Field(default_factory=list, max_length=256)
    exclude_packages: Strs = Field(default_factory=list, max_length=256)
    users: Strs = Field(default_factory=list, max_length=256)
    exclude_users: Strs = Field(default_factory=list, max_length=256)
    max_risk: str = Field("destructive", max_length=16)
    add_paths: Strs = Field(default_factory=list, max_length=256)

    def selection(self) -> Selection:
        try:
            return Selection.model_validate(self.model_dump())
        except ValidationError as exc:
            raise InvalidArguments(describe_validation_error(exc)) from None


class ExecuteOptionsRequest(Options):
    dry_run: bool = False


class ExecuteRequest(Options):
    plan: str
    digest: str = Field(max_length=64, pattern=r"^[0-9a-f]{64}$")
    dry_run: bool = False


class ExecutionRef(Options):
    execution: str


class PlanRef(Options):
    plan: str


def execute_action(plan: Plan) -> str:
    """The polkit action a plan needs, from what the engine reports about it:
    - `org.ose.reset.clean` (auth_admin_keep): every item safe and of class cache, log
      or temp, no package changes, no conffile restored, no account removed, no home
      reset to /etc/skel;
    - `org.ose.reset.userdata` (auth_admin): any item of class user (people's data,
      dotfiles), a home reset to /etc/skel, or an account removed;
    - `org.ose.reset.system` (auth_admin): everything else (package changes, conffiles
      back to pristine, app data, /opt, /usr/local, anything not safe)."""
    a = plan.analysis
    present = {cls for cls, t in a.by_class.items() if t.count}
    if a.users_removed or a.skel_trees or "user" in present:
        return Action.RESET_USERDATA
    if (plan.highest_risk == "safe" and present <= CLEAN_CLASSES
            and not a.package_changes and not a.conffiles_restored):
        return Action.RESET_CLEAN
    return Action.RESET_SYSTEM


def shown(path: str) -> str:
    """A surrogate-escaped name (os.fsdecode) as valid UTF-8 text, \\xNN for bad bytes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _json(model: Any) -> dict[str, Any]:
    """A model as plain data with times as seconds since the epoch (as jobs give)."""
    data: dict[str, Any] = model.model_dump(mode="json")
    for key in ("created", "captured", "started", "finished"):
        value = getattr(model, key, None)
        if isinstance(value, datetime):
            data[key] = value.timestamp()
    return data


def plan_summary(plan: Plan) -> dict[str, Any]:
    return _json(plan)


def item_to_dbus(item: PlanItem) -> dict[str, Any]:
    data = item.model_dump(mode="json")
    data["path"] = shown(item.path)
    data["path_bytes"] = os.fsencode(item.path)
    return to_dbus(data)


def result_counts(result: ExecuteResult) -> dict[str, Any]:
    """An execution's result without the paths it skipped (who may read it is not
    checked where it travels: a job's Result, the public execution list)."""
    data = result.model_dump(mode="json")
    data.pop("skipped", None)
    return data


def execution_data(record: ExecutionRecord, with_paths: bool) -> dict[str, Any]:
    data = _json(record)
    if record.result is not None:
        data["result"] = result_counts(record.result)
        if with_paths:
            data["result"]["skipped"] = [
                {"path": shown(s.path), "reason": s.reason} for s in record.result.skipped]
    return data


class ResetInterface(ServiceInterface):
    def __init__(self, ctx: BusContext, engine: ResetEngine, jobs: JobManager) -> None:
        super().__init__(IFACE_RESET)
        self.ctx = ctx
        self._engine = engine
        self._jobs = jobs

    @property
    def engine(self) -> ResetEngine:
        return self._engine

    def close(self) -> None:
        """Stop the engine's walker processes (after the jobs have stopped)."""
        self._engine.close()

    # --- public reads -------------------------------------------------------------------

    @method()
    @exported(public=True)
    async def GetBaseline(self) -> "a{sv}":
        """The captured baseline, else the distribution's definition (source says which)."""
        return to_dbus(_json(await asyncio.to_thread(self._engine.baseline)))

    @method()
    @exported(public=True)
    async def ListProfiles(self) -> "aa{sv}":
        profiles = await asyncio.to_thread(self._engine.list_profiles)
        return [to_dbus(p.model_dump(mode="json", by_alias=True)) for p in profiles]

    @method()
    @exported(public=True)
    async def ListExecutions(self) -> "aa{sv}":
        records = await asyncio.to_thread(self._engine.list_executions)
        return [to_dbus(execution_data(r, with_paths=False)) for r in records]

    @method()
    @exported(public=True)
    async def GetExecution(self, execution_id: "s") -> "a{sv}":
        """One execution; the paths it skipped only for callers who may preview."""
        exec_id = check_execution_id(execution_id)
        record = await asyncio.to_thread(self._engine.get_execution, exec_id)
        return to_dbus(execution_data(record, await guard.permitted(Action.RESET_PREVIEW)))

    # --- baseline -----------------------------------------------------------------------

    @method()
    @exported(Action.RESET_BASELINE, expensive=True)
    async def CaptureBaseline(self) -> "a{sv}":
        """Record now as "factory": packages, conffiles, accounts, enabled services."""
        await authorize()
        b = await asyncio.to_thread(self._engine.capture_baseline)
        return to_dbus({"source": b.source, "captured": b.captured.timestamp(),
                        "packages": len(b.packages), "conffiles": len(b.conffiles),
                        "users": len(b.users), "groups": len(b.groups),
                        "services": len(b.services), "snapshot": b.snapshot or ""})

    @method()
    @exported(Action.RESET_SYSTEM, expensive=True)
    async def RollbackToBaseline(self) -> "o":
        """btrfs: the whole root back to the snapshot taken with the baseline (a job;
        its Result says reboot_required). NotApplicable without that snapshot."""
        who = await authorize()

        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.1, "rolling the root back to the baseline snapshot")
            result = await asyncio.to_thread(self._engine.rollback_to_baseline)
            return result.model_dump(mode="json")

        job = self._jobs.start("reset.rollback_to_baseline", who.uid, run,
                               exclusive="system")
        return job_path(job.id)

    # --- analyze and preview ------------------------------------------------------------

    @method()
    @exported(Action.RESET_PREVIEW, expensive=True)
    async def Analyze(self, selection: "a{sv}") -> "o":
        """A job: the candidates' totals per class, risk and rule, package changes."""
        req = SelectionRequest.from_dbus(selection)
        sel = req.selection()
        who = await authorize(req)

        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.1, f"analyzing with profile {sel.profile}")
            result = await asyncio.to_thread(self._engine.analyze, sel)
            return result.model_dump(mode="json")

        return job_path(self._jobs.start("reset.analyze", who.uid, run).id)

    @method()
    @exported(Action.RESET_PREVIEW, expensive=True)
    async def Preview(self, selection: "a{sv}") -> "o":
        """A job whose Result is the plan: id, digest, totals, disk and packages before
        and after, highest risk, item count, and the action Execute will need. Its
        items are read with GetPlanItems."""
        req = SelectionRequest.from_dbus(selection)
        sel = req.selection()
        who = await authorize(req)

        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.1, f"planning with profile {sel.profile}")
            plan = await asyncio.to_thread(self._engine.preview, sel)
            return {**plan_summary(plan), "action": execute_action(plan)}

        return job_path(self._jobs.start("reset.preview", who.uid, run).id)

    @method()
    @exported(Action.RESET_PREVIEW)
    async def GetPlan(self, plan_id: "s") -> "a{sv}":
        req = PlanRef(plan=check_plan_id(plan_id))
        await authorize(req)
        plan = await asyncio.to_thread(self._engine.get_plan, req.plan)
        return to_dbus({**plan_summary(plan), "action": execute_action(plan)})

    @method()
    @exported(Action.RESET_PREVIEW, expensive=True)
    async def GetPlanItems(self, plan_id: "s", offset: "t", limit: "u") -> "aa{sv}":
        """Items [offset, offset+limit) of a plan in path order; `path` is text (\\xNN
        for bytes that aren't UTF-8), `path_bytes` the name as it is."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidArguments(f"limit is 1 to {MAX_PAGE}")
        req = PlanRef(plan=check_plan_id(plan_id))
        await authorize(req)
        if offset >= MAX_ROWS:
            return []
        items = await asyncio.to_thread(self._engine.plan_items, req.plan, offset, limit)
        return [item_to_dbus(i) for i in items]

    # --- changes ------------------------------------------------------------------------

    @method()
    @exported(Action.RESET_SYSTEM, expensive=True)
    async def Execute(self, plan_id: "s", digest: "s", options: "a{sv}") -> "o":
        """Carry out a previewed plan (digest = the one shown) behind a rollback point.
        Options: dry_run (check everything, change nothing). The job's Result holds the
        execution id and counts."""
        opts = ExecuteOptionsRequest.from_dbus(options)
        req = ExecuteRequest(plan=check_plan_id(plan_id), digest=digest, dry_run=opts.dry_run)
        plan = await asyncio.to_thread(self._engine.get_plan, req.plan)
        if plan.digest != req.digest:
            raise DigestMismatch(f"the digest does not match plan {req.plan}: preview "
                                 "again and confirm the new plan")
        action = Action.RESET_PREVIEW if req.dry_run else execute_action(plan)
        who = await authorize(req, action=action)

        async def run(job: JobContext) -> dict[str, Any]:
            loop = asyncio.get_running_loop()

            def progress(fraction: float, text: str) -> None:
                loop.call_soon_threadsafe(job.progress, fraction, shown(text))

            job.progress(0.0, "checking the plan")
            result = await asyncio.to_thread(
                self._engine.execute, req.plan, req.digest, ExecuteOptions(dry_run=req.dry_run),
                JobJournal(job.step), job_id=job.job_id, progress=progress,
                check_cancelled=job.check_cancelled)
            return result_counts(result)

        job = self._jobs.start("reset.execute", who.uid, run, exclusive="system")
        return job_path(job.id)

    @method()
    @exported(Action.RESET_ROLLBACK, expensive=True)
    async def Rollback(self, execution_id: "s") -> "o":
        """Put back everything the execution removed, from its rollback point."""
        req = ExecutionRef(execution=check_execution_id(execution_id))
        await asyncio.to_thread(self._engine.get_execution, req.execution)  # NotFound first
        who = await authorize(req)

        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.1, f"rolling back {req.execution}")
            result = await asyncio.to_thread(self._engine.rollback, req.execution,
                                             JobJournal(job.step))
            return result.model_dump(mode="json")

        job = self._jobs.start("reset.rollback", who.uid, run, exclusive="system")
        return job_path(job.id)

    @method()
    @exported(Action.RESET_SYSTEM, expensive=True)
    async def Resume(self, execution_id: "s") -> "o":
        """Finish an interrupted execution (the action is the one its plan needs)."""
        req = ExecutionRef(execution=check_execution_id(execution_id))
        record = await asyncio.to_thread(self._engine.get_execution, req.execution)
        plan = await asyncio.to_thread(self._engine.get_plan, record.plan)
        who = await authorize(req, action=execute_action(plan))
        repo = self._jobs.repo

        async def run(job: JobContext) -> dict[str, Any]:
            loop = asyncio.get_running_loop()

            def progress(fraction: float, text: str) -> None:
                loop.call_soon_threadsafe(job.progress, fraction, shown(text))

            def resume() -> ExecuteResult:
                # The journal of the job that started the execution says how far it got.
                steps = repo.steps(record.job_id) if record.job_id is not None else []
                return self._engine.resume(
                    req.execution, entries_from_steps(steps), JobJournal(job.step),
                    progress=progress, check_cancelled=job.check_cancelled)

            job.progress(0.0, f"resuming {req.execution}")
            return result_counts(await asyncio.to_thread(resume))

        job = self._jobs.start("reset.resume", who.uid, run, exclusive="system")
        return job_path(job.id)
