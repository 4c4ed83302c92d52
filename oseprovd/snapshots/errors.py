"""Errors of the snapshot engine (the shared base classes live in oseprovd.errors)."""

from __future__ import annotations

from oseprovd.errors import Busy, InvalidArguments, NotApplicable, NotFound, OseError


class InvalidSnapshotId(InvalidArguments):
    """An id that doesn't match the strict pattern (`../../x`, `-y`, ...)."""


class SnapshotNotFound(NotFound):
    pass


class ConfigNotFound(NotFound):
    pass


class NotRecorded(OseError):
    """The thing at a snapshot's place is not the snapshot the engine recorded there:
    a subvolume a user made, or one swapped in later. It is never rolled back to or
    deleted."""

    name = "NotRecorded"


class UnsafeSnapshotPath(OseError):
    """A path leads outside the snapshot or the live tree (a symlink, `..`)."""

    name = "UnsafePath"


class SubvolumeBusy(Busy):
    """A subvolume to be swapped is mounted or open by a process."""


class RollbackNotPossible(NotApplicable):
    pass


class BackendFailed(OseError):
    """The filesystem refused an operation; the message says which and why."""

    name = "BackendFailed"
