"""The one place that maps what went wrong to a message and an exit code.

Exit codes (documented in osectl(1)): 0 ok, 1 failed, 2 usage, 3 not found,
4 not authorized, 5 daemon not reachable.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_NOT_AUTHORIZED = 4
EXIT_UNREACHABLE = 5

START_HINT = (
    "start it with `systemctl start oseprovd` (or, on a machine without systemd, "
    "`scripts/demo` from the source tree), or point --address at its bus"
)

ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"

_BY_NAME = {
    "org.freedesktop.DBus.Error.InvalidArgs": (EXIT_USAGE, None),
    ACCESS_DENIED: (EXIT_NOT_AUTHORIZED, None),
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired": (
        EXIT_NOT_AUTHORIZED, "authentication is required; run without --no-ask-password "
        "in a session with a polkit agent, or as root"),
    "org.ose.Error.NotFound": (EXIT_NOT_FOUND, None),
    "org.freedesktop.DBus.Error.UnknownObject": (EXIT_NOT_FOUND, None),
    "org.freedesktop.DBus.Error.ServiceUnknown": (
        EXIT_UNREACHABLE, f"the OSE daemon (org.ose.Provisioning1) is not running; {START_HINT}"),
    "org.freedesktop.DBus.Error.NameHasNoOwner": (
        EXIT_UNREACHABLE, f"the OSE daemon (org.ose.Provisioning1) is not running; {START_HINT}"),
    "org.freedesktop.DBus.Error.NoReply": (
        EXIT_UNREACHABLE, "the OSE daemon did not answer in time; check `journalctl -u oseprovd`"),
}


class CliError(Exception):
    """An error to show the user: a D-Bus error name (or a local one) and what to do."""

    def __init__(self, name: str, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.exit_code = exit_code


# A job's Error carries the short name of the domain error; these two are the standard
# freedesktop names on the bus, the rest are org.ose.Error.<name>.
_JOB_STANDARD = {
    "InvalidArgs": "org.freedesktop.DBus.Error.InvalidArgs",
    "AccessDenied": ACCESS_DENIED,
}


def from_job(short_name: str, message: str) -> CliError:
    """The error of a job that did not succeed, with the exit status its kind has when
    a call fails the same way (not found: 3, bad arguments: 2, ...), else 1."""
    short = short_name or "Failed"
    name = _JOB_STANDARD.get(short, f"org.ose.Error.{short}")
    code, _ = _BY_NAME.get(name, (EXIT_FAILED, None))
    return CliError(name, message, code)


def from_dbus(name: str, message: str) -> CliError:
    code, text = _BY_NAME.get(name, (EXIT_FAILED, None))
    return CliError(name, text or message or name, code)


def unreachable(address: str, reason: str) -> CliError:
    return CliError(
        "org.ose.Client.BusUnreachable",
        f"cannot reach the system bus at {address} ({reason}); {START_HINT}",
        EXIT_UNREACHABLE,
    )
