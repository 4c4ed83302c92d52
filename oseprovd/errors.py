"""Domain errors. Engines raise these; bus/errors.py maps each to one D-Bus error name.

Nothing here knows about D-Bus: `name` is the short name that the bus layer puts behind
`org.ose.Error.` (or maps to a standard freedesktop name).
"""

from __future__ import annotations


class OseError(Exception):
    """Base of every error that a client may see. The message must say what to do next."""

    name = "Failed"


class InvalidArguments(OseError):
    name = "InvalidArgs"


class NotAuthorized(OseError):
    name = "AccessDenied"


class NotFound(OseError):
    name = "NotFound"


class Busy(OseError):
    """Another operation that must not overlap is running."""

    name = "Busy"


class RateLimited(OseError):
    name = "RateLimited"


class LimitExceeded(OseError):
    """Too many calls in flight from one sender, or a request too large."""

    name = "LimitExceeded"


class ShuttingDown(OseError):
    name = "ShuttingDown"


class NotApplicable(OseError):
    name = "NotApplicable"


class Cancelled(OseError):
    name = "Cancelled"


class Unavailable(OseError):
    """A component this call needs (a backend, a tool) is not there."""

    name = "Unavailable"
