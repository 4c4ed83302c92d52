"""Errors of the reset engine (OseError subclasses; bus/errors.py maps their names)."""

from __future__ import annotations

from oseprovd.errors import InvalidArguments, NotFound


class PlanNotFound(NotFound):
    pass


class ExecutionNotFound(NotFound):
    pass


class DigestMismatch(InvalidArguments):
    """The digest given to Execute is not the plan's: the caller confirmed another plan."""

    name = "PlanDigestMismatch"
