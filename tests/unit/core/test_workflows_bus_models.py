"""Workflows1's action mapping (the strongest a run's steps need) and its records as
D-Bus values (pure: no bus)."""

from __future__ import annotations

from datetime import UTC, datetime

from oseprovd.bus.convert import to_dbus
from oseprovd.bus.workflows import rollback_action, run_action, run_data, workflow_data
from oseprovd.workflows.models import (
    ResetStep,
    RunRecord,
    SnapshotStep,
    StepRecord,
    TuningStep,
    Workflow,
)
from oseprovd.workflows.runner import Prepared
from tests.unit.core.test_reset_bus_models import plan

SNAP = SnapshotStep(kind="snapshot")
TUNE = TuningStep(kind="tuning", profile="throughput")
RESET = ResetStep(kind="reset", profile="light")


def prepared(steps: list[object], plans: dict[int, object]) -> Prepared:
    wf = Workflow(name="w", steps=tuple(steps))  # type: ignore[arg-type]
    return Prepared(wf, plans)  # type: ignore[arg-type]


def test_a_run_asks_for_the_strongest_action_of_its_steps() -> None:
    clean, system, user = plan({"cache": 1}), plan({"app": 1}), plan({"user": 1})
    assert run_action(prepared([SNAP], {})) == "org.ose.snapshots.create"
    assert run_action(prepared([SNAP, RESET], {1: clean})) == "org.ose.reset.clean"
    assert run_action(prepared([RESET, TUNE], {0: clean})) == "org.ose.tuning.apply"
    assert run_action(prepared([TUNE, RESET], {1: system})) == "org.ose.reset.system"
    assert run_action(prepared([RESET, RESET, TUNE], {0: user, 1: system})) == \
        "org.ose.reset.userdata"
    # a dry run changes nothing, but its plans name files: the preview action
    assert run_action(prepared([RESET, TUNE], {0: user}), dry_run=True) == \
        "org.ose.reset.preview"
    assert run_action(prepared([TUNE], {}), dry_run=True) == "org.ose.tuning.apply"


def test_rollback_action_and_records_as_dbus_values() -> None:
    now = datetime.now(UTC)
    rec = RunRecord(id="w" + "0" * 16, workflow="w", dry_run=False, state="done",
                    started=now, finished=now, steps=[
                        StepRecord(index=0, kind="snapshot", state="done", snapshot="root-1"),
                        StepRecord(index=1, kind="tuning", state="done",
                                   tuning_applied="throughput", result={"changed": 2})])
    assert rollback_action(rec) == "org.ose.tuning.revert"
    rec.steps.append(StepRecord(index=2, kind="reset", state="done", execution="x" + "1" * 16))
    assert rollback_action(rec) == "org.ose.reset.rollback"
    out = to_dbus(run_data(rec))
    assert out["started"].signature == "d" and out["steps"].signature == "aa{sv}"
    sel = ResetStep(kind="reset", selection={"profile": "light",  # type: ignore[arg-type]
                                             "classes": ["cache"]})
    wf = to_dbus(workflow_data(Workflow(name="w", steps=(SNAP, sel, TUNE))))
    assert wf["steps"].signature == "aa{sv}"
