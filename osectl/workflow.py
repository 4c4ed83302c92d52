"""osectl workflow list|show|run|runs|rollback: the admin's named sequences of snapshot,
reset and tuning steps (/etc/ose/workflows.d), each run as one job behind one rollback
point."""

from __future__ import annotations

from typing import Any

import click

from osectl.context import Ctx, confirm, follow_job, pass_ctx
from oseprovd.bus.names import IFACE_WORKFLOWS, SERVICE_PATHS

PATH = SERVICE_PATHS[IFACE_WORKFLOWS]
RUN_COLUMNS = [("id", "Run", None), ("workflow", "Workflow", None), ("state", "State", None),
               ("dry_run", "Dry run", None), ("started", "Started", "time"),
               ("finished", "Finished", "time"), ("job_id", "Job", None)]


def _call(ctx: Ctx, member: str, signature: str = "", *body: Any) -> Any:
    return ctx.client.call(PATH, IFACE_WORKFLOWS, member, signature, body)


def _step_text(step: dict[str, Any]) -> str:
    kind = step.get("kind", "")
    if kind == "reset":
        sel = step.get("selection") or {}
        what = (f"profile {step['profile']}" if step.get("profile")
                else f"selection (profile {sel.get('profile', 'light')}, "
                     f"{', '.join(k for k, v in sel.items() if v and k != 'profile') or 'as is'})")
    elif kind == "tuning":
        what = f"profile {step.get('profile', '')}"
    else:
        what = f"config {step.get('config', 'root')}"
    desc = step.get("description") or ""
    return f"{kind}: {what}" + (f" — {desc}" if desc else "")


def _show_run(ctx: Ctx, run: dict[str, Any]) -> None:
    ctx.out.table([run], f"Workflow run {run.get('id', '')}", RUN_COLUMNS, "")
    for s in run.get("steps") or []:
        undo = s.get("execution") or s.get("snapshot") or ""
        res = s.get("result") or {}
        counts = ", ".join(f"{k} {v}" for k, v in res.items() if k != "plan")
        line = f"  {int(s.get('index', 0)) + 1}. {s.get('kind')}: {s.get('state')}"
        if undo:
            line += f" ({undo})"
        if counts:
            line += f"; {counts}"
        if s.get("detail"):
            line += f"; {s['detail']}"
        ctx.out.message(line)
    if run.get("error"):
        ctx.out.message(f"error: {run['error']}")


@click.group()
def workflow() -> None:
    """Named sequences of steps (snapshot, reset, tuning) run as one job."""


@workflow.command("list")
@pass_ctx
def list_(ctx: Ctx) -> None:
    """The workflows in /etc/ose/workflows.d (and the files that do not load)."""
    rows = _call(ctx, "ListWorkflows")
    if ctx.out.as_json:
        ctx.out.json(rows)
        return
    for r in rows:
        r["kinds"] = " → ".join(r.get("steps") or []) or "-"
        r["note"] = r.get("error") or r.get("description", "")
    ctx.out.table(rows, "Workflows", [("name", "Workflow", None), ("kinds", "Steps", None),
                                      ("note", "Description", None)],
                  "No workflows (add one in /etc/ose/workflows.d/NAME.toml).")


@workflow.command()
@click.argument("name")
@pass_ctx
def show(ctx: Ctx, name: str) -> None:
    """The steps of workflow NAME."""
    wf = _call(ctx, "GetWorkflow", "s", name)
    if ctx.out.as_json:
        ctx.out.json(wf)
        return
    ctx.out.message(f"{wf.get('name')}: {wf.get('description') or '(no description)'}")
    for i, step in enumerate(wf.get("steps") or [], 1):
        ctx.out.message(f"  {i}. {_step_text(step)}")


@workflow.command()
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Check every step, change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def run(ctx: Ctx, name: str, dry_run: bool, yes: bool) -> None:
    """Run workflow NAME's steps in order as one job (asks first, showing the steps)."""
    wf = _call(ctx, "GetWorkflow", "s", name)
    steps = wf.get("steps") or []
    if not ctx.out.as_json:
        for i, step in enumerate(steps, 1):
            ctx.out.message(f"  {i}. {_step_text(step)}")
    if not dry_run:
        confirm(yes, f"Run workflow {name} ({len(steps)} steps)?")
    path = _call(ctx, "RunWorkflow", "sa{sv}", name, {"dry_run": dry_run})
    result = follow_job(ctx, path, f"workflow {name}")
    if ctx.out.as_json:
        ctx.out.json(result)
        return
    _show_run(ctx, result)
    if not dry_run:
        ctx.out.message(f"undo all of it: osectl workflow rollback {result.get('id')}")


@workflow.command()
@click.argument("run_id", required=False)
@pass_ctx
def runs(ctx: Ctx, run_id: str | None) -> None:
    """The workflow runs, or one of them with its steps."""
    if run_id is None:
        ctx.out.table(_call(ctx, "ListRuns"), "Workflow runs", RUN_COLUMNS, "No runs.")
        return
    rec = _call(ctx, "GetRun", "s", run_id)
    if ctx.out.as_json:
        ctx.out.json(rec)
        return
    _show_run(ctx, rec)


@workflow.command()
@click.argument("run_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def rollback(ctx: Ctx, run_id: str, yes: bool) -> None:
    """Undo every step of RUN_ID, last first."""
    confirm(yes, f"Roll back workflow run {run_id}?")
    result = follow_job(ctx, _call(ctx, "RollbackWorkflow", "s", run_id),
                        f"rollback {run_id}")
    if ctx.out.as_json:
        ctx.out.json(result)
        return
    _show_run(ctx, result)
