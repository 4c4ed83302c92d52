"""Diff and undo for the backends whose snapshot is a whole tree the daemon can open
(btrfs subvolumes, mounted LVM snapshots): only how the tree is opened differs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager

from oseprovd.snapshots import treesync
from oseprovd.snapshots.diff import diff_dirs
from oseprovd.snapshots.ids import check_op_id
from oseprovd.snapshots.journal import StepJournal
from oseprovd.snapshots.models import DiffEntry, SnapshotRecord, UndoResult
from oseprovd.system.rootfs import split_rel

OpenTree = Callable[[SnapshotRecord], AbstractContextManager[int]]
LinkFinder = Callable[[int, int], Callable[[os.stat_result], str | None]]
# (snapshot fd, live fd) -> treesync.SyncContext.unchanged, or None (compare it all)
UnchangedSince = Callable[[int, int], treesync.Unchanged | None]


def diff_snapshot(open_tree: OpenTree, open_live: Callable[[], int],
                  exclude: frozenset[str], record: SnapshotRecord,
                  other: SnapshotRecord | None) -> Iterator[DiffEntry]:
    """Changes from `record` to `other`, or to the live tree when `other` is None."""
    with open_tree(record) as old:
        if other is None:
            live = open_live()
            try:
                yield from diff_dirs(old, live, same_inodes=True, exclude=exclude)
            finally:
                os.close(live)
        else:
            with open_tree(other) as new:
                yield from diff_dirs(old, new, same_inodes=True, exclude=exclude)


def undo_paths(open_tree: OpenTree, open_live: Callable[[], int], exclude: frozenset[str],
               record: SnapshotRecord, paths: Sequence[str], op: str, journal: StepJournal,
               step: str, link_finder: LinkFinder | None = None,
               unchanged: UnchangedSince | None = None) -> UndoResult:
    """Make `paths` in the live tree what they are in the snapshot.

    Recovery needs only the engine's "undo.begin" (it runs the whole undo again), so
    each path is a journal note (`step`, for progress), not an fsync'd record; the
    restored entries are made durable by the batch: temps, one syncfs, renames, one
    syncfs (`step` with ".path" swapped for ".commit" is noted before the renames)."""
    check_op_id(op)
    parts = [split_rel(p) for p in paths]
    commit_step = step.removesuffix(".path") + ".commit"
    with open_tree(record) as snap:
        live = open_live()
        try:
            batch = treesync.Batch(
                live, before_commit=lambda: journal.note(commit_step, {"op": op}))
            ctx = treesync.SyncContext(
                op=op, live_root_fd=live, same_inodes=True, exclude=exclude,
                find_live_link=link_finder(snap, live) if link_finder else None,
                batch=batch,
                unchanged=unchanged(snap, live) if unchanged else None)
            try:
                treesync.restore_paths(
                    ctx, snap, live, parts,
                    before_each=lambda rel: journal.note(step, {"op": op, "path": rel}),
                )
                batch.commit(ctx)
            except BaseException:
                batch.discard(os.fstat(live).st_dev)
                raise
        finally:
            os.close(live)
    return UndoResult(snapshot=record.id, paths=tuple("/".join(p) for p in parts),
                      changed=ctx.changed, skipped=tuple(ctx.skipped))
