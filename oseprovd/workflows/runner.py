"""Run a workflow's steps in order as one unit, and undo a run as one unit.

One rollback point per run: every step keeps its own undo data (the snapshot it made,
the reset execution with the copy of exactly what it removed, the tuning profile that
was active before), and all of it is grouped under the run id in a run record. Rolling
a run back undoes its changing steps in reverse order: tuning first (the previous
profile re-applied, or the original values restored), then each reset execution from
its rollback point. A snapshot step changes nothing, so there is nothing to undo; its
snapshot stays listed in the run (a btrfs root can go back to it whole with
`osectl snapshot rollback`).

The run stops at the first failing step; the record says which steps ran and the error.
A failed step's partial changes are undone too by a rollback (a reset execution that
failed midway is rolled back from the copy it made before deleting).

No bus code here: the bus layer previews (`prepare`), authorizes, then runs in a job.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oseprovd.errors import Cancelled, NotApplicable, NotFound, OseError
from oseprovd.reset.engine import ResetEngine
from oseprovd.reset.models import ExecuteOptions, Plan
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.journal import Journal, MemoryJournal
from oseprovd.tuning.engine import TuningEngine
from oseprovd.tuning.facts import MachineFacts
from oseprovd.workflows.models import (
    RUN_ID_PATTERN,
    ResetStep,
    RunRecord,
    SnapshotStep,
    StepRecord,
    TuningStep,
    Workflow,
)

log = logging.getLogger(__name__)

CheckCancelled = Callable[[], None]


class WorkflowFailed(OseError):
    """A step failed: the run stopped there (the message says which and what ran)."""

    name = "Failed"


@dataclass(frozen=True)
class Prepared:
    """A workflow with a previewed plan for each reset step (by step index)."""

    workflow: Workflow
    plans: dict[int, Plan]


def _now() -> datetime:
    return datetime.now(UTC)


class RunStore:
    """Run records as JSON files, one per run, written atomically (0600)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, run_id: str) -> Path:
        if not re.fullmatch(RUN_ID_PATTERN, run_id):
            raise NotFound(f"invalid workflow run id {run_id!r}")
        return self.directory / f"{run_id}.json"

    def save(self, record: RunRecord) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(record.id)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(record.model_dump_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def get(self, run_id: str) -> RunRecord:
        try:
            text = self._path(run_id).read_text()
        except FileNotFoundError:
            raise NotFound(f"no workflow run {run_id!r}; see `osectl workflow runs`"
                           ) from None
        return RunRecord.model_validate(json.loads(text))

    def list(self) -> list[RunRecord]:
        try:
            names = sorted(p.stem for p in self.directory.glob("w*.json"))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            try:
                out.append(self.get(n))
            except (OseError, ValueError) as exc:
                log.warning("workflows: unreadable run record %s: %s", n, exc)
        return sorted(out, key=lambda r: r.started)


class _Capture:
    """A journal that passes entries on and remembers the reset execution id that a
    step's `reset.begin` names (so a step that fails midway can still be undone)."""

    def __init__(self, inner: Journal, began: Callable[[str], None]) -> None:
        self.inner = inner
        self.began = began

    def record(self, step: str, data: dict[str, Any]) -> None:
        self.inner.record(step, data)
        if step == "reset.begin" and not data.get("dry_run"):
            self.began(str(data.get("op")))


class WorkflowRunner:
    def __init__(self, runs: RunStore, reset: ResetEngine | None,
                 tuning: TuningEngine | None, snapshots: SnapshotEngine | None,
                 clock: Callable[[], datetime] = _now) -> None:
        self.runs = runs
        self.reset = reset
        self.tuning = tuning
        self.snapshots = snapshots
        self.clock = clock
        self._lock = threading.Lock()

    # --- before the job -----------------------------------------------------------------

    def prepare(self, workflow: Workflow) -> Prepared:
        """Check every step can run here and preview each reset step's plan (the plan
        that will be executed, and what decides the action a run needs)."""
        plans: dict[int, Plan] = {}
        for i, step in enumerate(workflow.steps):
            if isinstance(step, SnapshotStep):
                if self.snapshots is None:
                    raise NotApplicable(f"step {i + 1}: no snapshot engine")
                self.snapshots.config(step.config)
            elif isinstance(step, ResetStep):
                if self.reset is None:
                    raise NotApplicable(f"step {i + 1}: no reset engine")
                plans[i] = self.reset.preview(step.resolved())
            elif isinstance(step, TuningStep):
                if self.tuning is None:
                    raise NotApplicable(f"step {i + 1}: no tuning engine")
                self.tuning.get_profile(step.profile)
        return Prepared(workflow, plans)

    # --- run ----------------------------------------------------------------------------

    def run(self, prepared: Prepared, journal: Journal, *, dry_run: bool = False,
            facts: MachineFacts | None = None, job_id: int | None = None,
            check_cancelled: CheckCancelled | None = None) -> RunRecord:
        """Each step is in the run record (state "running", with what will undo it as
        soon as it is known) before it acts, so a daemon killed midway leaves a record
        that `recover` marks interrupted and `rollback` can undo."""
        wf = prepared.workflow
        record = RunRecord(id="w" + secrets.token_hex(8), workflow=wf.name, dry_run=dry_run,
                           state="running", started=self.clock(), job_id=job_id)

        def save() -> None:
            if not dry_run:
                self.runs.save(record)

        if dry_run:
            journal = MemoryJournal()
        save()
        journal.record("workflow.begin", {"run": record.id, "workflow": wf.name,
                                          "dry_run": dry_run, "steps": len(wf.steps)})
        with self._lock:
            for i, step in enumerate(wf.steps):
                current = StepRecord(index=i, kind=step.kind, state="running")
                record.steps.append(current)
                try:
                    if check_cancelled is not None:
                        check_cancelled()
                    save()
                    journal.record("workflow.step", {"run": record.id, "index": i,
                                                     "step_kind": step.kind})
                    self._step(current, step, prepared, journal, dry_run, facts, job_id,
                               check_cancelled, record, save)
                except Exception as exc:
                    current.state = "failed"
                    current.detail = str(exc)
                    record.state = "failed"
                    record.error = f"step {i + 1} ({step.kind}) failed: {exc}"
                    record.finished = self.clock()
                    for j in range(i + 1, len(wf.steps)):
                        record.steps.append(StepRecord(index=j, kind=wf.steps[j].kind,
                                                       state="skipped"))
                    journal.record("workflow.failed", {"run": record.id, "index": i})
                    save()
                    if isinstance(exc, Cancelled):
                        raise  # the job ends as cancelled; the record says where
                    done = [s.index + 1 for s in record.steps if s.state == "done"]
                    raise WorkflowFailed(
                        f"workflow {wf.name}: {record.error}; steps done: "
                        f"{done or 'none'}; undo with `osectl workflow rollback "
                        f"{record.id}`") from exc
                current.state = "done"
                journal.record("workflow.step.done", {"run": record.id, "index": i})
                save()
            record.state = "done"
            record.finished = self.clock()
            journal.record("workflow.done", {"run": record.id})
            save()
            return record

    def _step(self, current: StepRecord, step: SnapshotStep | ResetStep | TuningStep,
              prepared: Prepared, journal: Journal, dry_run: bool,
              facts: MachineFacts | None, job_id: int | None,
              check_cancelled: CheckCancelled | None, record: RunRecord,
              save: Callable[[], None]) -> None:
        """Carry out one step, filling `current` with what undoes it (saved as soon as
        it is known)."""
        if isinstance(step, SnapshotStep):
            assert self.snapshots is not None
            if dry_run:
                self.snapshots.config(step.config)
                current.detail = "dry run: no snapshot made"
                return
            snap = self.snapshots.create_snapshot(
                step.config, step.description or f"workflow {record.workflow} "
                f"({record.id})", {"workflow": record.workflow, "run": record.id},
                job_id=job_id, important=True)
            current.snapshot = snap.id
            return
        if isinstance(step, ResetStep):
            assert self.reset is not None
            plan = prepared.plans[current.index]

            def began(execution: str) -> None:
                current.execution = execution
                save()

            result = self.reset.execute(plan.id, plan.digest, ExecuteOptions(dry_run=dry_run),
                                        _Capture(journal, began), job_id=job_id,
                                        check_cancelled=check_cancelled)
            current.result = {"plan": plan.id, "removed": result.removed,
                              "removed_bytes": result.removed_bytes,
                              "skipped": result.skipped_count,
                              "rollback_point": result.rollback_point or ""}
            return
        assert self.tuning is not None
        if facts is None:
            raise NotApplicable("a tuning step needs the machine facts")
        current.tuning_previous = self.tuning.active_profile
        if not dry_run:
            current.tuning_applied = step.profile
            save()
        applied = self.tuning.apply(step.profile, facts, dry_run, step.skip_power)
        current.result = {"changed": sum(1 for o in applied.outcomes if o.status == "changed"),
                          "knobs": len(applied.plan.items)}
        if not applied.complete and not dry_run:
            raise NotApplicable(f"tuning profile {step.profile} did not take on every knob")

    def recover(self) -> list[RunRecord]:
        """At start: a run left "running" by a stopped daemon is marked interrupted (its
        running step failed), so it can be rolled back as a whole; one left
        "rolling_back" is marked rollback_failed, so the rollback can be run again."""
        out = []
        for record in self.runs.list():
            if record.state == "rolling_back":
                record.state = "rollback_failed"
                record.error = "the daemon stopped during the rollback; roll back again"
                self.runs.save(record)
                out.append(record)
                continue
            if record.state != "running":
                continue
            for s in record.steps:
                if s.state == "running":
                    s.state = "failed"
                    s.detail = "interrupted: the daemon stopped during this step"
            record.state = "interrupted"
            record.error = "the daemon stopped during the run"
            record.finished = self.clock()
            self.runs.save(record)
            out.append(record)
        return out

    # --- rollback -----------------------------------------------------------------------

    def rollback(self, run_id: str, journal: Journal, *,
                 facts: MachineFacts | None = None) -> RunRecord:
        """Undo every changing step of a run (done or failed midway), last first."""
        record = self.runs.get(run_id)
        if record.dry_run:
            raise NotApplicable(f"run {run_id} was a dry run: nothing to roll back")
        if record.state in ("rolled_back", "running", "rolling_back"):
            raise NotApplicable(f"run {run_id} is {record.state}")
        with self._lock:
            record.state = "rolling_back"
            self.runs.save(record)
            journal.record("workflow.rollback.begin", {"run": run_id})
            errors: list[str] = []
            for step in sorted(record.steps, key=lambda s: -s.index):
                if step.state not in ("done", "failed", "rollback_failed"):
                    continue
                try:
                    undone = self._undo(step, journal, facts)
                except Exception as exc:
                    step.state = "rollback_failed"
                    step.detail = str(exc)
                    errors.append(f"step {step.index + 1} ({step.kind}): {exc}")
                    log.error("workflows: rolling back step %d of %s failed: %s",
                              step.index + 1, run_id, exc)
                else:
                    if undone:
                        step.state = "rolled_back"
                journal.record("workflow.rollback.step", {"run": run_id,
                                                          "index": step.index})
                self.runs.save(record)
            record.state = "rollback_failed" if errors else "rolled_back"
            record.error = "; ".join(errors)
            record.finished = self.clock()
            journal.record("workflow.rollback.done", {"run": run_id})
            self.runs.save(record)
            if errors:
                raise WorkflowFailed(f"rolling back {run_id}: {record.error}; fix it and "
                                     "roll back again")
            return record

    def _undo(self, step: StepRecord, journal: Journal,
              facts: MachineFacts | None) -> bool:
        if step.kind == "reset" and step.execution is not None:
            assert self.reset is not None
            ex = self.reset.get_execution(step.execution)
            if ex.state != "rolled_back":
                self.reset.rollback(step.execution, journal)
            return True
        if step.kind == "tuning" and step.tuning_applied is not None:
            assert self.tuning is not None
            if step.tuning_previous is not None:
                if facts is None:
                    raise NotApplicable("re-applying the previous tuning profile needs "
                                        "the machine facts")
                self.tuning.apply(step.tuning_previous, facts)
            else:
                result = self.tuning.revert()
                if not result.complete:
                    raise NotApplicable("some original tuning values could not be "
                                        "restored")
            return True
        return step.kind == "snapshot"

    def list_runs(self) -> list[RunRecord]:
        return self.runs.list()

    def get_run(self, run_id: str) -> RunRecord:
        return self.runs.get(run_id)


def step_summaries(steps: Sequence[StepRecord]) -> list[dict[str, Any]]:
    return [s.model_dump(mode="json", exclude_none=True) for s in steps]
