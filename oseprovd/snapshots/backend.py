"""What a snapshot backend does; the engine picks one per config (`config.backend`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from oseprovd.snapshots.journal import Journal, StepJournal
from oseprovd.snapshots.models import (
    DiffEntry,
    RecoveryOutcome,
    RollbackResult,
    SnapshotConfig,
    SnapshotRecord,
    UndoResult,
)


class CreatedSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    uuid: str
    size: int | None = None


class SnapshotBackend(Protocol):
    name: str

    def prepare(self, config: SnapshotConfig) -> None:
        """Check the config's places (and make the snapshot dir, root-owned 0700)."""

    def create(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot: ...

    def verify(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        """Raise NotRecorded unless the saved thing is the one recorded in `record`."""

    def delete(self, config: SnapshotConfig, record: SnapshotRecord) -> None: ...

    def will_change(self, config: SnapshotConfig, record: SnapshotRecord,
                    paths: Sequence[str], created: bool) -> None:
        """Called before an operation changes or deletes `paths` (relative to
        config.path). A whole-tree backend has nothing to do; the copy backend saves
        them. `created`: directories among them also lose, on restore, entries the
        operation created in them."""

    def free_fraction(self, config: SnapshotConfig) -> float:
        """Free space of the config's filesystem (0..1), once space freed by deleted
        snapshots is really free."""

    def diff(self, config: SnapshotConfig, record: SnapshotRecord,
             other: SnapshotRecord | None) -> Iterator[DiffEntry]: ...

    def undo(self, config: SnapshotConfig, record: SnapshotRecord, paths: Sequence[str],
             op: str, journal: StepJournal) -> UndoResult: ...

    def cleanup_undo(self, config: SnapshotConfig, op: str, paths: Sequence[str]) -> None:
        """Remove what a killed undo `op` left beside `paths` (temp entries)."""

    def open_browse(self, config: SnapshotConfig, record: SnapshotRecord) -> int:
        """An open fd (O_DIRECTORY, the caller closes it) of the recorded snapshot's
        whole tree, checked to be what was recorded, for a read-only browse mount; or
        NotApplicable when the backend keeps no whole tree."""

    def describe(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot | None:
        """What is saved under `snap_id` now, if anything (recovery uses it)."""

    def rollback(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                 journal: Journal, previous_id: str) -> RollbackResult: ...

    def recover(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                steps: Sequence[tuple[str, dict[str, Any]]],
                journal: Journal) -> RecoveryOutcome:
        """Finish or revert rollback `op` to `record`, whose journaled steps are
        `steps`; steps taken while recovering go to `journal` under the same op."""
