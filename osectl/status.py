"""osectl status: is the daemon there, and how is it."""

from __future__ import annotations

import click

from osectl.context import Ctx, pass_ctx

FIELDS = [
    ("version", "Version", None), ("uptime_seconds", "Uptime (s)", None),
    ("jobs_running", "Jobs running", None), ("target_root", "Target root", None),
    ("state_dir", "State dir", None), ("state_dir_bytes", "State dir size", "bytes"),
    ("polkit_reachable", "polkit reachable", None), ("features", "Services", None),
]


@click.command()
@pass_ctx
def status(ctx: Ctx) -> None:
    """Show the daemon's status."""
    ctx.out.record(ctx.client.status(), "OSE provisioning daemon", FIELDS)
