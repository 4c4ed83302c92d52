"""What every command gets: the client and the output, built from the global options."""

from __future__ import annotations

from dataclasses import dataclass

import click

from osectl.client import Client
from osectl.render import Output


@dataclass
class Ctx:
    client: Client
    out: Output


pass_ctx = click.make_pass_decorator(Ctx)
