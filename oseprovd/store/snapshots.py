"""The snapshot engine's records and the pages of Diff jobs, in the state store.

The engine's `SqliteSnapshotRepository` runs its own statements on a connection; here
it gets the store's, held under the store's lock for each call, because the engine runs
in worker threads while the loop writes jobs and audit records on the same connection.
"""

from __future__ import annotations

from collections.abc import Iterable

from oseprovd.snapshots.models import SnapshotRecord
from oseprovd.snapshots.repository import SqliteSnapshotRepository
from oseprovd.store.db import Store


class StoreSnapshotRepository:
    """`SnapshotRepository` over the state store (table `snapshots`, migration 2)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, record: SnapshotRecord) -> None:
        with self._store.locked() as conn:
            SqliteSnapshotRepository(conn).add(record)

    def get(self, snap_id: str) -> SnapshotRecord | None:
        with self._store.locked() as conn:
            return SqliteSnapshotRepository(conn).get(snap_id)

    def list(self, config: str | None = None) -> list[SnapshotRecord]:
        with self._store.locked() as conn:
            return SqliteSnapshotRepository(conn).list(config)

    def delete(self, snap_id: str) -> None:
        with self._store.locked() as conn:
            SqliteSnapshotRepository(conn).delete(snap_id)


class DiffPages:
    """The entries a Diff job found, kept by its job id and read back a page at a time:
    a diff of a large tree never has to fit in one message (nor in memory)."""

    def __init__(self, store: Store, keep: int = 20) -> None:
        self._store = store
        self.keep = keep  # diffs kept; older ones are dropped when a new one starts

    def start(self, diff_id: int) -> None:
        with self._store.transaction() as conn:
            conn.execute("DELETE FROM snapshot_diffs WHERE diff_id = ?", (diff_id,))
            conn.execute(
                "DELETE FROM snapshot_diffs WHERE diff_id NOT IN (SELECT DISTINCT diff_id "
                "FROM snapshot_diffs ORDER BY diff_id DESC LIMIT ?)", (self.keep - 1,))

    def add(self, diff_id: int, first_seq: int, entries: Iterable[tuple[bytes, str]]) -> None:
        with self._store.transaction() as conn:
            conn.executemany(
                "INSERT INTO snapshot_diffs (diff_id, seq, path, change) VALUES (?, ?, ?, ?)",
                [(diff_id, first_seq + i, path, change)
                 for i, (path, change) in enumerate(entries)])

    def page(self, diff_id: int, offset: int, limit: int) -> list[tuple[bytes, str]]:
        rows = self._store.query(
            "SELECT path, change FROM snapshot_diffs WHERE diff_id = ? AND seq >= ? "
            "ORDER BY seq LIMIT ?", (diff_id, offset, limit))
        return [(bytes(r["path"]), str(r["change"])) for r in rows]

    def exists(self, diff_id: int) -> bool:
        return bool(self._store.query(
            "SELECT 1 FROM snapshot_diffs WHERE diff_id = ? LIMIT 1", (diff_id,)))
