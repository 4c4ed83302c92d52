"""org.ose.Workflows1 at /org/ose/Provisioning1/Workflows: the admin's named sequences
of snapshot, reset and tuning steps (<root>/etc/ose/workflows.d/*.toml), each run as ONE
job behind one rollback point (see workflows/runner.py), and rolled back as one.

Who may do what:
- the workflows and the runs (states, counts, execution and snapshot ids) are public;
- RunWorkflow needs the strongest action among its steps (`run_action`): a reset step
  needs what Reset1.Execute would ask for its plan, a tuning step org.ose.tuning.apply, a
  snapshot step org.ose.snapshots.create; a dry run needs org.ose.reset.preview when it
  has a reset step (its plans name files), else the strongest of the others;
- RollbackWorkflow needs org.ose.reset.rollback when the run has a reset step, else
  org.ose.tuning.revert.
The reset steps are previewed before polkit is asked (the plans decide the action):
that is a walk of the selected trees, rate-limited per caller as every expensive call.
"""

# No "from __future__ import annotations": dbus-fast reads "-> None" as no reply value
# only when the annotation is the real None.

import asyncio
import logging
from typing import Any

from dbus_fast.service import ServiceInterface, method
from pydantic import Field

from oseprovd.bus.convert import to_dbus
from oseprovd.bus.guard import BusContext, authorize, exported
from oseprovd.bus.models import Options
from oseprovd.bus.names import IFACE_WORKFLOWS, Action, job_path
from oseprovd.bus.reset import execute_action
from oseprovd.bus.tuning import TuningInterface
from oseprovd.jobs import JobContext, JobManager
from oseprovd.reset.engine import JobJournal
from oseprovd.workflows.loader import WorkflowCatalog
from oseprovd.workflows.models import (
    ResetStep,
    RunRecord,
    SnapshotStep,
    TuningStep,
    Workflow,
)
from oseprovd.workflows.runner import Prepared, WorkflowRunner

log = logging.getLogger(__name__)

# Strongest first: a run asks polkit for the first of these that one of its steps needs.
RUN_ACTIONS = (Action.RESET_USERDATA, Action.RESET_SYSTEM, Action.TUNING_APPLY,
               Action.RESET_CLEAN, Action.SNAPSHOTS_CREATE)


class RunOptions(Options):
    dry_run: bool = False


class WorkflowRef(Options):
    name: str = Field(max_length=48, pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")


class RunRef(Options):
    run: str = Field(max_length=17, pattern=r"^w[0-9a-f]{16}$")


def run_action(prepared: Prepared, dry_run: bool = False) -> str:
    """The polkit action a run of this prepared workflow needs (see the module doc)."""
    steps = prepared.workflow.steps
    if dry_run and prepared.plans:
        return Action.RESET_PREVIEW
    needed = set()
    for i, step in enumerate(steps):
        if isinstance(step, ResetStep):
            needed.add(execute_action(prepared.plans[i]))
        elif isinstance(step, TuningStep):
            needed.add(Action.TUNING_APPLY)
        elif isinstance(step, SnapshotStep):
            needed.add(Action.SNAPSHOTS_CREATE)
    return next(a for a in RUN_ACTIONS if a in needed)


def rollback_action(record: RunRecord) -> str:
    kinds = {s.kind for s in record.steps}
    if "reset" in kinds or "tuning" not in kinds:
        return Action.RESET_ROLLBACK
    return Action.TUNING_REVERT


# Plain data (a job's Result is stored as JSON); to_dbus types it on the way out.
def workflow_data(wf: Workflow) -> dict[str, Any]:
    data: dict[str, Any] = wf.model_dump(mode="json", exclude_none=True)
    return data


def run_data(record: RunRecord) -> dict[str, Any]:
    data: dict[str, Any] = record.model_dump(mode="json", exclude_none=True)
    data["started"] = record.started.timestamp()
    if record.finished is not None:
        data["finished"] = record.finished.timestamp()
    return data


class WorkflowsInterface(ServiceInterface):
    def __init__(self, ctx: BusContext, catalog: WorkflowCatalog, runner: WorkflowRunner,
                 jobs: JobManager, tuning: TuningInterface | None) -> None:
        super().__init__(IFACE_WORKFLOWS)
        self.ctx = ctx
        self._catalog = catalog
        self._runner = runner
        self._jobs = jobs
        self._tuning = tuning

    # --- public reads -------------------------------------------------------------------

    @method()
    @exported(public=True)
    async def ListWorkflows(self) -> "aa{sv}":
        """The valid workflows (name, description, steps) and, for a file that does not
        load, {name, error} where the error names the file and the key."""
        good, bad = await asyncio.to_thread(self._catalog.list)
        out = [to_dbus({"name": w.name, "description": w.description,
                        "steps": [s.kind for s in w.steps]}) for w in good]
        for error in bad:
            name = error.split(": ", 1)[0].rsplit("/", 1)[-1].removesuffix(".toml")
            out.append(to_dbus({"name": name, "error": error}))
        return out

    @method()
    @exported(public=True)
    async def GetWorkflow(self, name: "s") -> "a{sv}":
        req = WorkflowRef(name=name)
        wf = await asyncio.to_thread(self._catalog.get, req.name)
        return to_dbus(workflow_data(wf))

    @method()
    @exported(public=True)
    async def ListRuns(self) -> "aa{sv}":
        runs = await asyncio.to_thread(self._runner.list_runs)
        return [to_dbus(run_data(r)) for r in runs]

    @method()
    @exported(public=True)
    async def GetRun(self, run_id: "s") -> "a{sv}":
        req = RunRef(run=run_id)
        return to_dbus(run_data(await asyncio.to_thread(self._runner.get_run, req.run)))

    # --- changes ------------------------------------------------------------------------

    @method()
    @exported(Action.RESET_SYSTEM, expensive=True)
    async def RunWorkflow(self, name: "s", options: "a{sv}") -> "o":
        """Run the workflow's steps in order as one job (stops at the first failure);
        the job's Result is the run: id, state, steps (execution and snapshot ids,
        counts). Options: dry_run. The action is the strongest its steps need."""
        req = WorkflowRef(name=name)
        opts = RunOptions.from_dbus(options)
        wf = await asyncio.to_thread(self._catalog.get, req.name)
        prepared = await asyncio.to_thread(self._runner.prepare, wf)
        who = await authorize(opts, action=run_action(prepared, opts.dry_run))
        has_tuning = any(isinstance(s, TuningStep) for s in wf.steps)
        facts = (await self._tuning.machine_facts()
                 if has_tuning and self._tuning is not None else None)

        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.0, f"running workflow {wf.name}")
            try:
                record = await asyncio.to_thread(
                    self._runner.run, prepared, JobJournal(job.step), dry_run=opts.dry_run,
                    facts=facts, job_id=job.job_id, check_cancelled=job.check_cancelled)
            finally:
                if has_tuning and not opts.dry_run and self._tuning is not None:
                    self._tuning.changed_elsewhere()
            return run_data(record)

        job = self._jobs.start("workflow.run", who.uid, run, exclusive="system")
        return job_path(job.id)

    @method()
    @exported(Action.RESET_ROLLBACK, expensive=True)
    async def RollbackWorkflow(self, run_id: "s") -> "o":
        """Undo every step of a run, last first, as one job."""
        req = RunRef(run=run_id)
        record = await asyncio.to_thread(self._runner.get_run, req.run)
        who = await authorize(req, action=rollback_action(record))
        has_tuning = any(s.kind == "tuning" for s in record.steps)
        facts = (await self._tuning.machine_facts()
                 if has_tuning and self._tuning is not None else None)

        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.1, f"rolling back workflow run {req.run}")
            try:
                done = await asyncio.to_thread(self._runner.rollback, req.run,
                                               JobJournal(job.step), facts=facts)
            finally:
                if has_tuning and self._tuning is not None:
                    self._tuning.changed_elsewhere()
            return run_data(done)

        job = self._jobs.start("workflow.rollback", who.uid, run, exclusive="system")
        return job_path(job.id)
