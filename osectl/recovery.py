"""osectl recovery list|rollback|resume: factory-reset recovery as root WITHOUT the daemon
and without D-Bus (a rescue shell, a daemon that will not start).

It opens the daemon's state dir directly and builds the same snapshot and reset engines
the daemon builds (oseprovd.engines): the snapshot engine's recovery first finishes or
reverts a half-done restore, then executions left running are marked interrupted, then
one is rolled back or resumed with a FileJournal in the state dir. Nothing here imports
the bus library: it works where D-Bus doesn't.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from osectl.context import Ctx, confirm, pass_ctx
from osectl.errors import EXIT_FAILED, EXIT_USAGE, CliError
from osectl.reset import show_executions

DEFAULT_STATE = Path("/var/lib/oseprovd")
JOURNAL = "reset-recovery.journal"


def daemons_on(state_dir: Path, proc: Path = Path("/proc")) -> list[int]:
    """Pids of oseprovd processes using `state_dir` (two writers on one state would
    race: recovery is for when the daemon is stopped)."""
    want = state_dir.resolve()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = [a.decode("utf-8", "replace")
                    for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        is_daemon = any(os.path.basename(a) == "oseprovd" for a in argv[:1]) or any(
            argv[i] == "-m" and argv[i + 1] == "oseprovd" for i in range(len(argv) - 1))
        if not is_daemon:
            continue
        state = DEFAULT_STATE
        for i, a in enumerate(argv):
            if a == "--state-dir" and i + 1 < len(argv):
                state = Path(argv[i + 1])
            elif a.startswith("--state-dir="):
                state = Path(a.split("=", 1)[1])
        try:
            if state.resolve() == want:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class Recovery:
    """The engines over a state dir, recovered (built only when a command runs)."""

    def __init__(self, state_dir: Path, root: Path, force: bool) -> None:
        from oseprovd.store.db import DB_NAME

        if os.geteuid() != 0:
            raise CliError("org.ose.Client.Usage", "recovery works on the daemon's state: "
                           "run it as root", EXIT_USAGE)
        if not (state_dir / DB_NAME).is_file():
            raise CliError("org.ose.Client.Usage", f"no daemon state in {state_dir} "
                           f"({DB_NAME} is missing); give --state-dir", EXIT_USAGE)
        pids = daemons_on(state_dir)
        if pids and not force:
            raise CliError("org.ose.Client.Usage", f"oseprovd (pid {pids[0]}) is running on "
                           f"{state_dir}: stop it first (systemctl stop oseprovd), or use "
                           "osectl reset rollback|resume through it", EXIT_USAGE)
        from oseprovd.config import Settings
        from oseprovd.engines import reset_engine, snapshot_engine
        from oseprovd.snapshots.journal import FileJournal
        from oseprovd.store.db import Store
        from oseprovd.store.jobs import JobRepository

        self.settings = Settings(root=root, state_dir=state_dir)
        self.store = Store(state_dir)
        self.jobs = JobRepository(self.store)
        self.snapshots = snapshot_engine(self.settings, self.store)  # runs its recover()
        self.engine = reset_engine(self.settings, self.snapshots, workers=1)
        self.interrupted = {r.id for r in self.engine.interrupted()}
        self.journal = FileJournal(state_dir / JOURNAL)

    def entries(self, exec_id: str) -> list[Any]:
        """What the execution journaled: the daemon job's steps, then this tool's."""
        from oseprovd.reset.engine import entries_from_steps

        record = self.engine.get_execution(exec_id)
        steps = self.jobs.steps(record.job_id) if record.job_id is not None else []
        return entries_from_steps(steps) + self.journal.entries()

    def close(self) -> None:
        self.engine.close()
        self.store.close()


@click.group()
@click.option("--state-dir", type=click.Path(path_type=Path), default=DEFAULT_STATE,
              show_default=True, help="The daemon's state directory.")
@click.option("--root", type=click.Path(path_type=Path), default=Path("/"),
              show_default=True, help="The root the daemon reset (its --root).")
@click.option("--force", is_flag=True, help="Even if an oseprovd seems to run on it.")
@click.pass_context
def recovery(ctx: click.Context, state_dir: Path, root: Path, force: bool) -> None:
    """Undo or finish a factory reset as root without the daemon (rescue shell)."""
    ctx.meta["recovery"] = (state_dir, root, force)


def _open(ctx: click.Context) -> Recovery:
    state_dir, root, force = ctx.meta["recovery"]
    rec = Recovery(state_dir, root, force)
    ctx.call_on_close(rec.close)
    return rec


@recovery.command("list")
@click.pass_context
@pass_ctx
def list_executions(out: Ctx, ctx: click.Context) -> None:
    """Reset executions (interrupted ones first) and the rollback points."""
    rec = _open(ctx)
    rows = []
    for r in rec.engine.list_executions():
        data = r.model_dump(mode="json", exclude={"result"})
        data["started"] = r.started.timestamp()
        data["finished"] = r.finished.timestamp() if r.finished else None
        rows.append(data)
    rows.sort(key=lambda r: (r["id"] not in rec.interrupted, r["started"]))
    points = [s.model_dump(mode="json") for s in rec.snapshots.list_snapshots(
        rec.engine.snapshot_config)] if rec.snapshots.list_configs() else []
    runs = _workflow_runs(rec.settings.state_dir)
    if out.out.as_json:
        out.out.json({"executions": rows, "interrupted": sorted(rec.interrupted),
                      "rollback_points": points, "workflow_runs": runs})
        return
    show_executions(out, rows)
    if runs:
        out.out.table(runs, "Workflow runs (undo: their reset executions, last first)", [
            ("id", "Run", None), ("workflow", "Workflow", None), ("state", "State", None),
            ("executions", "Reset executions", None)], "")
    out.out.table(points, "Rollback points (snapshot config root)", [
        ("id", "Snapshot", None), ("kind", "Kind", None), ("created", "Created", None),
        ("description", "Description", None)], "No rollback points.")
    if rec.interrupted:
        out.out.message("interrupted: " + ", ".join(sorted(rec.interrupted))
                        + "; osectl recovery rollback|resume ID")


def _workflow_runs(state_dir: Path) -> list[dict[str, Any]]:
    """Workflow runs not rolled back, with the reset executions they made (last first):
    without the daemon, each is rolled back with `osectl recovery rollback`."""
    from oseprovd.workflows.runner import RunStore

    out = []
    for r in RunStore(state_dir / "workflows").list():
        if r.dry_run or r.state == "rolled_back":
            continue
        execs = [s.execution for s in sorted(r.steps, key=lambda s: -s.index)
                 if s.execution is not None and s.state != "rolled_back"]
        out.append({"id": r.id, "workflow": r.workflow, "state": r.state,
                    "executions": execs})
    return out


@recovery.command()
@click.argument("execution_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@pass_ctx
def rollback(out: Ctx, ctx: click.Context, execution_id: str, yes: bool) -> None:
    """Put back everything EXECUTION_ID removed, from its rollback point."""
    rec = _open(ctx)
    _safe(lambda: rec.engine.get_execution(execution_id))
    confirm(yes, f"Roll back reset {execution_id}?")
    result = _run(lambda: rec.engine.rollback(execution_id, rec.journal))
    out.out.message(f"rolled back {execution_id}: {result['restored']} items restored from "
                    f"{result['snapshot'] or '-'}", result)


@recovery.command()
@click.argument("execution_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@pass_ctx
def resume(out: Ctx, ctx: click.Context, execution_id: str, yes: bool) -> None:
    """Finish the interrupted EXECUTION_ID."""
    rec = _open(ctx)
    entries = _safe(lambda: rec.entries(execution_id))
    confirm(yes, f"Finish reset {execution_id}?")
    result = _run(lambda: rec.engine.resume(execution_id, entries, rec.journal))
    out.out.message(f"finished {execution_id}: removed {result['removed']} items, "
                    f"{result['skipped_count']} skipped", result)


def _safe(fn: Any) -> Any:
    """An engine call; its domain errors as the CLI's (named, exit status 1)."""
    from oseprovd.errors import OseError

    try:
        return fn()
    except OseError as exc:
        raise CliError(f"org.ose.Error.{exc.name}", str(exc), EXIT_FAILED) from None


def _run(fn: Any) -> dict[str, Any]:
    data: dict[str, Any] = _safe(fn).model_dump(mode="json")
    data.pop("skipped", None)  # counts here; the paths stay in the state store
    return data
