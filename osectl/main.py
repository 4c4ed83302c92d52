"""osectl: the command-line client of the OSE provisioning daemon."""

from __future__ import annotations

import importlib
import os
import sys

import click

from osectl.client import Client
from osectl.context import Ctx
from osectl.errors import EXIT_FAILED, EXIT_USAGE, CliError
from osectl.render import Output

CONTEXT = {"help_option_names": ["-h", "--help"]}

# Each command's module, imported only when that command runs (or help lists them all):
# a cached `osectl discover all` should not pay for the reset and snapshot modules.
COMMANDS = {
    "status": "osectl.status", "jobs": "osectl.jobs", "audit": "osectl.audit",
    "tune": "osectl.tune", "snapshot": "osectl.snapshot", "discover": "osectl.discover",
    "scan": "osectl.discover", "report": "osectl.discover", "profile": "osectl.discover",
    "reset": "osectl.reset", "workflow": "osectl.workflow", "recovery": "osectl.recovery",
}


class LazyGroup(click.Group):
    """A group whose subcommands live in COMMANDS and are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMANDS:
            command = getattr(importlib.import_module(COMMANDS[cmd_name]), cmd_name)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return command


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print pure JSON on stdout, errors too.")
@click.option("--address", metavar="ADDRESS", envvar="OSECTL_BUS_ADDRESS",
              help="D-Bus address of the bus the daemon is on (default: the system bus).")
@click.option("--no-ask-password", is_flag=True,
              help="Do not let polkit ask for a password; fail instead.")
@click.option("--no-color", is_flag=True, help="No colours in human output.")
@click.version_option(package_name="ose-provisioning", prog_name="osectl")
@click.pass_context
def cli(ctx: click.Context, as_json: bool, address: str | None, no_ask_password: bool,
        no_color: bool) -> None:
    """Know, reset and tune this machine through the OSE provisioning daemon."""
    color = not no_color and "NO_COLOR" not in os.environ
    client = Client(address, interactive=not no_ask_password)
    ctx.call_on_close(client.close)
    ctx.obj = Ctx(client, Output(as_json, color))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (e.g. `osectl completion bash > ...`)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "osectl", "_OSECTL_COMPLETE").source())



def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    out = Output(as_json, color=False)
    try:
        cli.main(args=args, prog_name="osectl", standalone_mode=False)
    except CliError as err:
        out.error(err)
        sys.exit(err.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        out.error(CliError("org.ose.Client.Aborted", "aborted", EXIT_FAILED))
        sys.exit(EXIT_FAILED)
    except click.UsageError as exc:
        if as_json:
            out.error(CliError("org.ose.Client.Usage", exc.format_message(), EXIT_USAGE))
        else:
            exc.show()
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        out.error(CliError("org.ose.Client.Failed", exc.format_message(), EXIT_FAILED))
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(EXIT_FAILED)
    except Exception as exc:  # never a traceback on the terminal
        out.error(CliError("org.ose.Client.Internal",
                           f"unexpected error ({type(exc).__name__}); please report it",
                           EXIT_FAILED))
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
