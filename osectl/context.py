"""What every command gets: the client and the output, built from the global options."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click

from osectl.client import Client
from osectl.errors import EXIT_FAILED, EXIT_USAGE, CliError, from_job
from osectl.render import Output


@dataclass
class Ctx:
    client: Client
    out: Output


pass_ctx = click.make_pass_decorator(Ctx)


def confirm(yes: bool, question: str) -> None:
    """Destructive commands ask first; without a terminal they need --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError("org.ose.Client.Usage",
                       f"{question} Refusing without a terminal to ask on; add --yes",
                       EXIT_USAGE)
    if not click.confirm(question, default=False, err=True):
        raise CliError("org.ose.Client.Aborted", "nothing done", EXIT_FAILED)


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
