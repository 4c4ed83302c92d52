"""btrfs backend: read-only snapshots of one subvolume in a root-owned 0700 directory.

Every snapshot is opened by name from an fd of that directory with O_NOFOLLOW, and is
accepted only if it is a read-only subvolume whose uuid is the one recorded when the
engine made it: a subvolume a user made (or swapped in) is never used.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from oseprovd.errors import OseError
from oseprovd.snapshots import treeops, treesync
from oseprovd.snapshots.backend import CreatedSnapshot
from oseprovd.snapshots.errors import (
    BackendFailed,
    NotRecorded,
    RollbackNotPossible,
    SnapshotNotFound,
    SubvolumeBusy,
    UnsafeSnapshotPath,
)
from oseprovd.snapshots.ids import check_op_id, check_snapshot_id
from oseprovd.snapshots.journal import Journal, StepJournal
from oseprovd.snapshots.models import (
    DiffEntry,
    Outcome,
    RecoveryOutcome,
    RollbackResult,
    SnapshotConfig,
    SnapshotRecord,
    UndoResult,
)
from oseprovd.snapshots.places import open_private_dir, statvfs_free
from oseprovd.system import btrfs, fileops
from oseprovd.system.rootfs import split_rel

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _open_dir(path: Path) -> int:
    try:
        return os.open(path, _DIR | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeSnapshotPath(f"{path} is a symlink or not a directory") from None
        raise


def _fail(what: str, exc: OSError) -> BackendFailed:
    return BackendFailed(f"{what}: {exc.strerror or exc}")


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) + 1 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


class BtrfsBackend:
    name = "btrfs"

    def __init__(self, proc: Path = Path("/proc")) -> None:
        if not btrfs.available():
            btrfs.subvolume_id(0)  # raises Unavailable with the install hint
        self.proc = proc

    # -- places -----------------------------------------------------------------

    def prepare(self, config: SnapshotConfig) -> None:
        os.close(self._open_snapdir(config, create=True))
        fd = self._open_live(config)
        os.close(fd)

    def _open_snapdir(self, config: SnapshotConfig, create: bool = False) -> int:
        return open_private_dir(config.snapshot_dir, create)

    def _open_live(self, config: SnapshotConfig) -> int:
        fd = _open_dir(config.path)
        if not btrfs.is_subvolume(fd):
            os.close(fd)
            raise RollbackNotPossible(f"{config.path} is not a btrfs subvolume")
        return fd

    @contextmanager
    def _snapshot(self, config: SnapshotConfig, record: SnapshotRecord) -> Iterator[int]:
        """The recorded snapshot's root, open; refused unless it is what we recorded."""
        check_snapshot_id(record.id)
        sdir = self._open_snapdir(config)
        try:
            try:
                fd = os.open(record.id, _DIR | os.O_NOFOLLOW, dir_fd=sdir)
            except FileNotFoundError:
                raise SnapshotNotFound(
                    f"snapshot {record.id} is recorded but gone from {config.snapshot_dir}"
                ) from None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeSnapshotPath(
                        f"{config.snapshot_dir}/{record.id} is a symlink or not a directory"
                    ) from None
                raise
        finally:
            os.close(sdir)
        try:
            info = btrfs.subvolume_info(fd) if btrfs.is_subvolume(fd) else None
            if info is None or info.uuid != record.uuid or not info.read_only:
                raise NotRecorded(
                    f"{config.snapshot_dir}/{record.id} is not the snapshot recorded as "
                    f"{record.id}; it is left alone"
                )
            yield fd
        finally:
            os.close(fd)

    def open_browse(self, config: SnapshotConfig, record: SnapshotRecord) -> int:
        with self._snapshot(config, record) as fd:
            return os.dup(fd)

    # -- create / verify / delete --------------------------------------------------

    def create(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot:
        check_snapshot_id(snap_id)
        sdir = self._open_snapdir(config, create=True)
        try:
            live = self._open_live(config)
            try:
                if fileops.lstat_at(sdir, snap_id) is not None:
                    raise BackendFailed(f"{config.snapshot_dir}/{snap_id} already exists")
                try:
                    btrfs.create_snapshot(live, sdir, snap_id, read_only=True)
                except OSError as exc:
                    raise _fail(f"snapshot of {config.path}", exc) from None
            finally:
                os.close(live)
            info = btrfs.subvolume_info(btrfs.fd_path(sdir, snap_id))
            return CreatedSnapshot(uuid=info.uuid)
        finally:
            os.close(sdir)

    def describe(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot | None:
        """What is saved under `snap_id` now (for recovery, which may have to record a
        snapshot a killed rollback made)."""
        sdir = self._open_snapdir(config)
        try:
            path = btrfs.fd_path(sdir, check_snapshot_id(snap_id))
            st = fileops.lstat_at(sdir, snap_id)
            if st is None or not stat.S_ISDIR(st.st_mode) or not btrfs.is_subvolume(path):
                return None
            return CreatedSnapshot(uuid=btrfs.subvolume_info(path).uuid)
        finally:
            os.close(sdir)

    def verify(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        with self._snapshot(config, record):
            pass

    def delete(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        with self._snapshot(config, record):
            pass
        sdir = self._open_snapdir(config)
        try:
            btrfs.delete_subvolume(sdir, record.id)
        except OSError as exc:
            raise _fail(f"delete of {record.id}", exc) from None
        finally:
            os.close(sdir)

    def will_change(self, config: SnapshotConfig, record: SnapshotRecord,
                    paths: Sequence[str], created: bool) -> None:
        return None  # the snapshot already holds the whole subvolume

    def free_fraction(self, config: SnapshotConfig, wait: float = 60.0) -> float:
        """btrfs frees a deleted snapshot's space in the background: wait for the
        cleaner (at most `wait` seconds), then ask statvfs."""
        fd = self._open_snapdir(config)
        try:
            deadline = time.monotonic() + wait
            btrfs.sync(fd)
            while btrfs.deleted_subvolumes(fd) and time.monotonic() < deadline:
                time.sleep(0.1)
            btrfs.sync(fd)
        finally:
            os.close(fd)
        return statvfs_free(config.snapshot_dir)

    # -- diff / undo -------------------------------------------------------------------

    def diff(self, config: SnapshotConfig, record: SnapshotRecord,
             other: SnapshotRecord | None) -> Iterator[DiffEntry]:
        return treeops.diff_snapshot(lambda r: self._snapshot(config, r),
                                     lambda: self._open_live(config), config.excluded(),
                                     record, other)

    def undo(self, config: SnapshotConfig, record: SnapshotRecord, paths: Sequence[str],
             op: str, journal: StepJournal) -> UndoResult:
        return treeops.undo_paths(lambda r: self._snapshot(config, r),
                                  lambda: self._open_live(config), config.excluded(),
                                  record, paths, op, journal, "btrfs.undo.path", _link_finder,
                                  _SinceSnapshot)

    def cleanup_undo(self, config: SnapshotConfig, op: str, paths: Sequence[str]) -> None:
        """Remove temp entries a killed undo left next to the paths it restored."""
        treesync.remove_undo_leftovers(lambda: self._open_live(config), op, paths)

    # -- rollback ----------------------------------------------------------------------

    def rollback(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                 journal: Journal, previous_id: str) -> RollbackResult:
        check_op_id(op)
        check_snapshot_id(previous_id)
        if config.root_subvolume:
            return self._rollback_default(config, record, op, journal)
        return self._rollback_swap(config, record, op, journal, previous_id)

    def _in_use(self, path: Path, subvol_path: str) -> str | None:
        p = str(path)
        try:
            lines = (self.proc / "self" / "mountinfo").read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            fields = line.split(" ")
            if len(fields) < 10:
                continue
            root, mnt = _unescape_mountinfo(fields[3]), _unescape_mountinfo(fields[4])
            fstype = fields[fields.index("-") + 1] if "-" in fields else ""
            if mnt == p or mnt.startswith(p + "/"):
                return f"{mnt} is a mount point"
            if fstype == "btrfs" and root == "/" + subvol_path:
                return f"the subvolume is mounted at {mnt}"
        me = os.getpid()
        for pid in os.listdir(self.proc):
            if not pid.isdigit() or int(pid) == me:
                continue
            base = self.proc / pid
            links = [base / "cwd", base / "root"]
            with suppress(OSError):
                links += [base / "fd" / n for n in os.listdir(base / "fd")]
            for link in links:
                try:
                    target = os.readlink(link)
                except OSError:
                    continue
                if target == p or target.startswith(p + "/"):
                    return f"process {pid} uses it"
        return None

    def _rollback_swap(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                       journal: Journal, previous_id: str) -> RollbackResult:
        name = config.path.name
        if not name:
            raise RollbackNotPossible(f"{config.path} has no parent to swap it in")
        if config.excluded():
            raise RollbackNotPossible(
                f"{config.snapshot_dir} lies inside {config.path}, so swapping the "
                "subvolume would hide the snapshots; keep snapshot_dir outside it"
            )
        tmp = f".{name}.ose-rollback-{op}"
        with self._snapshot(config, record) as snap:
            snap_uuid = btrfs.subvolume_info(snap).uuid
            parent = _open_dir(config.path.parent)
            try:
                live = self._open_live(config)
                try:
                    live_id = btrfs.subvolume_id(live)
                    subvol_path = btrfs.subvolume_path(live)
                finally:
                    os.close(live)
                busy = self._in_use(config.path, subvol_path)
                if busy:
                    raise SubvolumeBusy(
                        f"{config.path} can't be swapped while in use ({busy}); stop what "
                        "uses it and retry, or undo files instead"
                    )
                pst = os.fstat(parent)
                journal.record("btrfs.swap.begin", {
                    "op": op, "live_id": live_id, "snap_uuid": snap_uuid, "tmp": tmp,
                    "previous": previous_id,
                    "parent_times": [pst.st_atime_ns, pst.st_mtime_ns],
                })
                journal.record("btrfs.swap.clone", {"op": op})
                try:
                    btrfs.create_snapshot(snap, parent, tmp, read_only=False)
                except OSError as exc:
                    raise _fail(f"writable copy of {record.id}", exc) from None
                journal.record("btrfs.swap.exchange", {"op": op})
                fileops.exchange_at(parent, name, parent, tmp)
                self._retire(config, op, parent, tmp, previous_id, journal)
                # the temp entry came and went: the parent looks as it did before
                os.utime(parent, ns=(pst.st_atime_ns, pst.st_mtime_ns))
            finally:
                os.close(parent)
        return RollbackResult(snapshot=record.id, reboot_required=False,
                              previous=previous_id)

    def _retire(self, config: SnapshotConfig, op: str, parent: int, tmp: str,
                previous_id: str, journal: Journal) -> None:
        """Keep what was live as snapshot `previous_id` (read-only), so the rollback can
        itself be rolled back. Each step checks whether it was done already."""
        sdir = self._open_snapdir(config)
        try:
            journal.record("btrfs.swap.retire", {"op": op})
            if fileops.lstat_at(parent, tmp) is not None:
                if fileops.lstat_at(sdir, previous_id) is not None:
                    raise BackendFailed(f"{config.snapshot_dir}/{previous_id} exists")
                os.rename(tmp, previous_id, src_dir_fd=parent, dst_dir_fd=sdir)
            journal.record("btrfs.swap.seal", {"op": op})
            btrfs.set_read_only(btrfs.fd_path(sdir, previous_id), True)
            os.fsync(sdir)
        finally:
            os.close(sdir)

    def _rollback_default(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                          journal: Journal) -> RollbackResult:
        clone = f"rw-{op}"
        with self._snapshot(config, record) as snap:
            sdir = self._open_snapdir(config)
            try:
                old_default = btrfs.get_default_subvolume(sdir)
                journal.record("btrfs.default.begin", {
                    "op": op, "clone": clone, "old_default": old_default,
                    "snap_uuid": btrfs.subvolume_info(snap).uuid,
                })
                journal.record("btrfs.default.clone", {"op": op})
                try:
                    btrfs.create_snapshot(snap, sdir, clone, read_only=False)
                except OSError as exc:
                    raise _fail(f"writable copy of {record.id}", exc) from None
                new_id = btrfs.subvolume_id(btrfs.fd_path(sdir, clone))
                journal.record("btrfs.default.set", {"op": op, "new_id": new_id})
                btrfs.set_default_subvolume(sdir, new_id)
                btrfs.sync(sdir)
            finally:
                os.close(sdir)
        return RollbackResult(snapshot=record.id, reboot_required=True,
                              new_default_subvolume=new_id)

    # -- recovery ----------------------------------------------------------------------

    def recover(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                steps: Sequence[tuple[str, dict[str, Any]]],
                journal: Journal) -> RecoveryOutcome:
        first = {s: d for s, d in reversed(steps)}
        if "btrfs.swap.begin" in first:
            return self._recover_swap(config, op, first["btrfs.swap.begin"])
        if "btrfs.default.begin" in first:
            return self._recover_default(config, op, first["btrfs.default.begin"])
        # Killed before anything was changed.
        return RecoveryOutcome(op=op, action="rollback", outcome="nothing")

    def _recover_swap(self, config: SnapshotConfig, op: str,
                      begin: dict[str, Any]) -> RecoveryOutcome:
        tmp = str(begin["tmp"])
        if tmp != f".{config.path.name}.ose-rollback-{check_op_id(op)}":
            raise BackendFailed(f"journal entry of {op} names an unexpected path {tmp!r}")
        previous = check_snapshot_id(str(begin["previous"]))
        parent = _open_dir(config.path.parent)
        try:
            live = self._open_live(config)
            try:
                current = btrfs.subvolume_id(live)
            finally:
                os.close(live)
            outcome: Outcome
            if current != int(begin["live_id"]):
                # The exchange happened: finish by keeping the old live as `previous`.
                self._retire(config, op, parent, tmp, previous, _NullJournal())
                outcome = "finished"
            else:
                st = fileops.lstat_at(parent, tmp)
                if st is not None:
                    path = btrfs.fd_path(parent, tmp)
                    info = btrfs.subvolume_info(path) if btrfs.is_subvolume(path) else None
                    if info is None or info.parent_uuid != begin["snap_uuid"]:
                        raise BackendFailed(f"{tmp} is not the copy {op} made; left alone")
                    btrfs.delete_subvolume(parent, tmp)
                outcome = "reverted"
            times = begin.get("parent_times")
            if isinstance(times, list) and len(times) == 2:
                os.utime(parent, ns=(int(times[0]), int(times[1])))
            return RecoveryOutcome(op=op, action="rollback", outcome=outcome)
        finally:
            os.close(parent)

    def _recover_default(self, config: SnapshotConfig, op: str,
                         begin: dict[str, Any]) -> RecoveryOutcome:
        clone = str(begin["clone"])
        if clone != f"rw-{check_op_id(op)}":
            raise BackendFailed(f"journal entry of {op} names an unexpected path {clone!r}")
        sdir = self._open_snapdir(config)
        try:
            path = btrfs.fd_path(sdir, clone)
            exists = fileops.lstat_at(sdir, clone) is not None and btrfs.is_subvolume(path)
            if exists and btrfs.get_default_subvolume(sdir) == btrfs.subvolume_id(path):
                return RecoveryOutcome(op=op, action="rollback", outcome="finished")
            if btrfs.get_default_subvolume(sdir) != int(begin["old_default"]):
                btrfs.set_default_subvolume(sdir, int(begin["old_default"]))
            if exists:
                if btrfs.subvolume_info(path).parent_uuid != begin["snap_uuid"]:
                    raise BackendFailed(f"{clone} is not the copy {op} made; left alone")
                btrfs.delete_subvolume(sdir, clone)
            return RecoveryOutcome(op=op, action="rollback", outcome="reverted")
        finally:
            os.close(sdir)


def _link_finder(snap: int, live: int) -> Callable[[os.stat_result], str | None]:
    """A live name of a snapshot inode, if that inode still has the snapshot's content
    and metadata in the live subvolume (a snapshot shares inode numbers with its
    origin). ctime can't tell: unlinking another name changes it."""

    def find(s: os.stat_result) -> str | None:
        try:
            names = btrfs.ino_paths(snap, s.st_ino)
        except OSError:
            return None
        for raw in names:
            rel = os.fsdecode(raw)
            try:
                parts = split_rel(rel)
                parent = treesync.walk_dir(live, parts[:-1]) if parts else None
            except OseError:
                continue
            if parent is None:
                continue
            try:
                st = fileops.lstat_at(parent, parts[-1])
            finally:
                os.close(parent)
            if st is not None and stat.S_ISREG(st.st_mode) and (
                    st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode, st.st_uid, st.st_gid
            ) == (s.st_ino, s.st_mtime_ns, s.st_size, s.st_mode, s.st_uid, s.st_gid):
                return rel
        return None

    return find


class _SinceSnapshot:
    """What in the live subvolume was not written since a snapshot taken of it, so a
    walk can skip it (treesync.Unchanged). The live inodes written after the snapshot's
    transaction come from one tree search (after a commit: inode items reach the tree
    then), made at the first question, so an undo of named files never pays for it. A
    snapshot of another subvolume (e.g. the one a rollback kept), or a search or name
    lookup that fails, means: nothing is known unchanged, compare everything."""

    def __init__(self, snap: int, live: int) -> None:
        self.snap = snap
        self.live = live
        self._inodes: set[int] | None = None  # written since the snapshot
        self._dirs: set[str] = set()  # holding any of those, at any depth
        self._known = False

    def _load(self) -> None:
        if self._inodes is not None:
            return
        self._inodes = set()
        s_info = btrfs.subvolume_info(self.snap)
        l_info = btrfs.subvolume_info(self.live)
        if (s_info.parent_uuid != l_info.uuid or not s_info.read_only
                or not s_info.otransid):
            return
        try:
            btrfs.sync(self.live)
            changed = btrfs.changed_inodes(self.live, l_info.id, s_info.otransid)
            dirs = {""}
            for ino, mode in changed.items():
                if ino == 256:  # the subvolume's root: always walked
                    continue
                names = btrfs.ino_paths(self.live, ino)
                if not names and stat.S_ISDIR(mode):
                    return  # a directory with no name: don't guess
                for raw in names:
                    parts = os.fsdecode(raw).split("/")
                    upto = len(parts) if stat.S_ISDIR(mode) else len(parts) - 1
                    for i in range(1, upto + 1):
                        dirs.add("/".join(parts[:i]))
        except OSError:
            return
        self._inodes, self._dirs, self._known = set(changed), dirs, True

    def dir(self, rel: str) -> bool:
        self._load()
        return self._known and rel not in self._dirs

    def inode(self, ino: int) -> bool:
        self._load()
        return self._known and self._inodes is not None and ino not in self._inodes


class _NullJournal:
    def record(self, step: str, data: dict[str, Any]) -> None:
        return None

    def note(self, step: str, data: dict[str, Any]) -> None:
        return None
