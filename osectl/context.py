"""What every command gets: the client and the output, built from the global options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from osectl.client import Client
from osectl.errors import from_job
from osectl.render import Output


@dataclass
class Ctx:
    client: Client
    out: Output


pass_ctx = click.make_pass_decorator(Ctx)


def follow_job(ctx: Ctx, path: str, label: str) -> dict[str, Any]:
    """Follow a job to its end with a progress bar; its Result. A job that did not
    succeed is an error carrying the job's own error name and its exit status."""
    job_id = int(path.rsplit("/", 1)[1])
    last = ctx.out.progress(ctx.client.watch_job(job_id), label)
    if last.get("State") != "succeeded":
        name, message = last.get("Error") or ["", ""]
        raise from_job(name, f"{label} {last.get('State', 'failed')}: {message}")
    result: dict[str, Any] = last.get("Result", {})
    return result
