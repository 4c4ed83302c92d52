"""In-memory collaborators for engine tests (the real ones are tested on loop images)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

from oseprovd.errors import NotApplicable
from oseprovd.snapshots.backend import CreatedSnapshot
from oseprovd.snapshots.errors import NotRecorded
from oseprovd.snapshots.journal import Journal
from oseprovd.snapshots.models import (
    DiffEntry,
    RecoveryOutcome,
    RollbackResult,
    SnapshotConfig,
    SnapshotRecord,
    UndoResult,
)


class MemoryRepository:
    def __init__(self) -> None:
        self.records: dict[str, SnapshotRecord] = {}

    def add(self, record: SnapshotRecord) -> None:
        assert record.id not in self.records
        self.records[record.id] = record

    def get(self, snap_id: str) -> SnapshotRecord | None:
        return self.records.get(snap_id)

    def list(self, config: str | None = None) -> list[SnapshotRecord]:
        return sorted((r for r in self.records.values()
                       if config is None or r.config == config),
                      key=lambda r: (r.config, r.number))

    def delete(self, snap_id: str) -> None:
        self.records.pop(snap_id, None)


class FakeBackend:
    """Keeps a dict as "the tree"; snapshots are copies of it."""

    name = "btrfs"

    def __init__(self) -> None:
        self.live: dict[str, str] = {}
        self.saved: dict[str, tuple[str, dict[str, str]]] = {}
        self.counter = 0

    free = 1.0

    def prepare(self, config: SnapshotConfig) -> None:
        return None

    def free_fraction(self, config: SnapshotConfig) -> float:
        return self.free

    def create(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot:
        self.counter += 1
        uuid = f"uuid{self.counter}"
        self.saved[snap_id] = (uuid, copy.deepcopy(self.live))
        return CreatedSnapshot(uuid=uuid)

    def describe(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot | None:
        return CreatedSnapshot(uuid=self.saved[snap_id][0]) if snap_id in self.saved else None

    def open_browse(self, config: SnapshotConfig, record: SnapshotRecord) -> int:
        raise NotApplicable("the fake keeps its trees in memory")

    def verify(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        if self.saved.get(record.id, ("",))[0] != record.uuid:
            raise NotRecorded(record.id)

    def delete(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        del self.saved[record.id]

    def will_change(self, config: SnapshotConfig, record: SnapshotRecord,
                    paths: Sequence[str], created: bool) -> None:
        return None

    def diff(self, config: SnapshotConfig, record: SnapshotRecord,
             other: SnapshotRecord | None) -> Iterator[DiffEntry]:
        old = self.saved[record.id][1]
        new = self.live if other is None else self.saved[other.id][1]
        for p in sorted(set(old) | set(new)):
            if p not in old:
                yield DiffEntry(path=p, change="created")
            elif p not in new:
                yield DiffEntry(path=p, change="deleted")
            elif old[p] != new[p]:
                yield DiffEntry(path=p, change="content")

    def undo(self, config: SnapshotConfig, record: SnapshotRecord, paths: Sequence[str],
             op: str, journal: Journal) -> UndoResult:
        old = self.saved[record.id][1]
        for p in paths:
            journal.record("fake.undo.path", {"op": op, "path": p})
            if p in old:
                self.live[p] = old[p]
            else:
                self.live.pop(p, None)
        return UndoResult(snapshot=record.id, paths=tuple(paths), changed=len(paths))

    def cleanup_undo(self, config: SnapshotConfig, op: str, paths: Sequence[str]) -> None:
        return None

    def rollback(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                 journal: Journal, previous_id: str) -> RollbackResult:
        journal.record("fake.rollback", {"op": op})
        self.counter += 1
        self.saved[previous_id] = (f"uuid{self.counter}", self.live)
        self.live = copy.deepcopy(self.saved[record.id][1])
        return RollbackResult(snapshot=record.id, reboot_required=False,
                              previous=previous_id)

    def recover(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                steps: Sequence[tuple[str, dict[str, Any]]],
                journal: Journal) -> RecoveryOutcome:
        return RecoveryOutcome(op=op, action="rollback", outcome="reverted")
