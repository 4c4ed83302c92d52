"""Errors of the reset engine (OseError subclasses; bus/errors.py maps their names)."""

from __future__ import annotations

from oseprovd.errors import NotFound, OseError


class PlanNotFound(NotFound):
    pass


class ExecutionNotFound(NotFound):
    pass


class DigestMismatch(OseError):
    """The digest given to Execute is not the plan's (the caller confirmed another
    plan), or what the plan describes changed: org.ose.Error.PlanDigestMismatch, so a
    client knows to preview again (not InvalidArgs: the arguments were well-formed)."""

    name = "PlanDigestMismatch"
