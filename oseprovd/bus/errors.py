"""The one error-mapping point: every exception that leaves a handler passes through here.

Clients see a named error and a message that says what to do next, never a traceback
nor the bus library's generic error names; unexpected exceptions are logged in full.
"""

from __future__ import annotations

import logging

from dbus_fast.errors import DBusError
from pydantic import ValidationError

from oseprovd.bus.names import ERROR_ACCESS_DENIED, ERROR_INVALID_ARGS, ERROR_PREFIX
from oseprovd.errors import InvalidArguments, NotAuthorized, OseError

log = logging.getLogger(__name__)

ERROR_INTERNAL = ERROR_PREFIX + "Internal"

# Domain errors whose D-Bus name is a standard freedesktop one; the rest are
# org.ose.Error.<name>.
_STANDARD = {
    InvalidArguments: ERROR_INVALID_ARGS,
    NotAuthorized: ERROR_ACCESS_DENIED,
}

# Names a handler may pass through as they are (the bus layer raises them itself).
_PASS_THROUGH_PREFIXES = (ERROR_PREFIX, ERROR_INVALID_ARGS, ERROR_ACCESS_DENIED)

MAX_MESSAGE = 512


def error_name_for(exc: OseError) -> str:
    for cls, name in _STANDARD.items():
        if isinstance(exc, cls):
            return name
    return ERROR_PREFIX + exc.name


def describe_validation_error(exc: ValidationError) -> str:
    """A short account of what was wrong, naming fields, never echoing the values."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "argument"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "invalid arguments: " + "; ".join(parts)


def to_dbus_error(exc: BaseException, where: str) -> DBusError:
    if isinstance(exc, DBusError) and exc.type.startswith(_PASS_THROUGH_PREFIXES):
        return exc
    if isinstance(exc, ValidationError):
        return DBusError(ERROR_INVALID_ARGS, describe_validation_error(exc)[:MAX_MESSAGE])
    if isinstance(exc, OseError):
        return DBusError(error_name_for(exc), str(exc)[:MAX_MESSAGE] or exc.name)
    log.error("unexpected error in %s", where, exc_info=exc)
    return DBusError(ERROR_INTERNAL, "internal error; the daemon's journal has the details")
