"""osectl audit: the daemon's audit log (administrators only)."""

from __future__ import annotations

import time

import click

from osectl.context import Ctx, pass_ctx

COLUMNS = [
    ("time", "Time", "time"), ("uid", "UID", None), ("sender", "Sender", None),
    ("method", "Method", None), ("action", "Action", None), ("decision", "Decision", None),
    ("outcome", "Outcome", None),
]


@click.command()
@click.option("--since", type=float, default=None, metavar="SECONDS",
              help="Only entries from the last SECONDS seconds.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@pass_ctx
def audit(ctx: Ctx, since: float | None, limit: int) -> None:
    """Show who asked the daemon to do what, and what was decided."""
    options: dict[str, object] = {"limit": limit}
    if since is not None:
        options["since"] = max(0.0, time.time() - since)
    rows = ctx.client.audit_log(options)
    ctx.out.table(rows, "Audit log", COLUMNS, "No audit entries.")
