"""osectl jobs list|show|watch|cancel."""

from __future__ import annotations

import sys
from typing import Any

import click

from osectl.context import Ctx, pass_ctx
from osectl.errors import EXIT_FAILED

STATES = ["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]

COLUMNS = [
    ("id", "ID", None), ("operation", "Operation", None), ("state", "State", None),
    ("progress", "Progress", "percent"), ("caller_uid", "UID", None),
    ("created", "Created", "time"),
]
FIELDS = [
    ("id", "ID", None), ("operation", "Operation", None), ("state", "State", None),
    ("progress", "Progress", "percent"), ("status_text", "Status", None),
    ("caller_uid", "Started by uid", None), ("created", "Created", "time"),
    ("started", "Started", "time"), ("finished", "Finished", "time"),
    ("result", "Result", None), ("error_name", "Error", None),
    ("error_message", "Error message", None), ("path", "Object", None),
]


@click.group()
def jobs() -> None:
    """List, inspect, follow and cancel jobs."""


@jobs.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@pass_ctx
def list_jobs(ctx: Ctx, state: str | None, limit: int) -> None:
    """List recent jobs, newest first."""
    options: dict[str, Any] = {"limit": limit}
    if state:
        options["state"] = state
    rows = ctx.client.list_jobs(options)
    ctx.out.table(rows, "Jobs", COLUMNS, "No jobs yet.")


@jobs.command()
@click.argument("job_id", type=click.IntRange(1))
@pass_ctx
def show(ctx: Ctx, job_id: int) -> None:
    """Show one job."""
    ctx.out.record(ctx.client.get_job(job_id), f"Job {job_id}", FIELDS)


@jobs.command()
@click.argument("job_id", type=click.IntRange(1))
@pass_ctx
def watch(ctx: Ctx, job_id: int) -> None:
    """Follow a job's progress until it ends; exits 1 unless it succeeded."""
    last = ctx.out.progress(ctx.client.watch_job(job_id), f"job {job_id}")
    state = last.get("State", "unknown")
    if not ctx.out.as_json:
        error = last.get("Error") or ["", ""]
        detail = f": {error[1]}" if error and error[1] else ""
        ctx.out.message(f"job {job_id} {state}{detail}")
    if state != "succeeded":
        sys.exit(EXIT_FAILED)


@jobs.command()
@click.argument("job_id", type=click.IntRange(1))
@pass_ctx
def cancel(ctx: Ctx, job_id: int) -> None:
    """Ask a running job to stop at its next checkpoint."""
    ctx.client.cancel_job(job_id)
    ctx.out.message(f"asked job {job_id} to stop; follow it with `osectl jobs watch {job_id}`",
                    {"job": job_id, "cancel_requested": True})
