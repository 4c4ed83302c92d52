"""Make one entry of a live tree identical to the same entry of a saved tree.

Used by file-level undo (saved tree = a btrfs snapshot) and by the copy backend's
restore (saved tree = its store). Identical means bytes, holes, owner, mode, atime and
mtime, xattrs (ACLs included), symlink targets, device numbers and which names are hard
links of each other. Each replacement is a temp entry in the same directory renamed over
the old one, so a reader never sees a half-written file and a killed run can simply be
run again.

With a `Batch` in the context (file-level undo), the renames wait: every temp entry is
made first, one syncfs makes them all durable, then the renames (and what must follow
them: a directory's own times) run in order and one more syncfs makes those durable.
That is the atomic-write rule (temp, fsync, rename, sync the directory) for many entries
at the cost of two syncs, not one per entry.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Protocol

from oseprovd.snapshots.errors import BackendFailed, UnsafeSnapshotPath
from oseprovd.system import fileops
from oseprovd.system.rootfs import split_rel

TMP_PREFIX = ".ose-tmp-"
# Walks recurse (three frames a level); deeper trees get a clear error, not a crash.
MAX_DEPTH = 200


def check_depth(rel: str) -> None:
    if rel.count("/") >= MAX_DEPTH:
        raise BackendFailed(f"{rel[:200]!r}...: deeper than {MAX_DEPTH} levels; "
                            "restore a deeper path instead")


class Unchanged(Protocol):
    """Asked only about entries that carry the snapshot's own inode number."""

    def dir(self, rel: str) -> bool:
        """The live directory at `rel` holds, at any depth, nothing written since."""
        ...

    def inode(self, ino: int) -> bool:
        """Live inode `ino` was not written since (content, metadata, links)."""
        ...


@dataclass
class SyncContext:
    """State shared across one restore.

    `op` names the temp entries (so recovery can find its own leftovers); `links` maps a
    saved inode to the live path (relative to `live_root_fd`) it was restored at, so other
    names of that inode become hard links again; `same_inodes` allows the fast path for
    btrfs snapshots, whose files keep the live inode numbers.
    """

    op: str
    live_root_fd: int
    same_inodes: bool
    # values: a path relative to live_root_fd, or an open fd of the inode itself
    links: dict[tuple[int, int], str | int] = field(default_factory=dict)
    changed: int = 0
    skipped: list[str] = field(default_factory=list)
    counter: int = 0
    # Saving a live tree: don't descend into other mounts (src dirs on another st_dev).
    src_dev: int | None = None
    # Restoring without `created`: entries the saved tree lacks are left in place.
    keep_extra: bool = False
    # Paths (relative to the tree) that are not part of it: the snapshot dir inside it.
    exclude: frozenset[str] = frozenset()
    # For a saved inode with other names: a live name still holding that very inode,
    # unchanged (btrfs: resolved with INO_PATHS), so a partial restore relinks to it.
    find_live_link: Callable[[os.stat_result], str | None] | None = None

    # Renames held back until the temp entries are durable (see Batch); None = at once.
    batch: Batch | None = None
    # What the live tree knows has not changed since the snapshot (btrfs generations),
    # so a walk skips it; None: compare everything.
    unchanged: Unchanged | None = None

    run: str = field(default_factory=lambda: secrets.token_hex(4))

    def tmp_name(self) -> str:
        # op first, so recovery finds leftovers of any run of this op by prefix
        self.counter += 1
        return f"{self.own_prefix()}{self.counter}"

    def own_prefix(self) -> str:
        """Temp entries of this very run (not yet renamed when a Batch holds them)."""
        return f"{TMP_PREFIX}{self.op}-{self.run}-"


class Batch:
    """Renames and the steps that must follow them, held back until `commit`.

    `commit` syncs the filesystem once (the temp entries' bytes and metadata), runs the
    held steps in the order they were asked for, which leaves the tree exactly as doing
    each at once would have, then fsyncs every directory the restore changed (renames,
    removals and mkdirs done at once, directory times), or syncs the filesystem again
    when they are many. Steps use our own dup of each directory fd (one per directory),
    never a path.
    A batch that grows past MAX_DIRS directories or MAX_STEPS steps is committed on the
    way (a restore of a whole big tree), so open fds stay bounded.
    """

    MAX_DIRS = 128  # our dups, beside the walk's own two fds a level (at most 200 levels)
    MAX_STEPS = 4096
    FSYNC_DIRS = 8  # more changed directories than this: one syncfs instead

    def __init__(self, live_fd: int, before_commit: Callable[[], None] | None = None) -> None:
        self.live_fd = live_fd
        self.before_commit = before_commit
        self._steps: list[Callable[[], None]] = []
        self._dirs: dict[tuple[int, int], int] = {}
        self._temps: list[tuple[int, str]] = []  # (dir fd, temp name) not yet renamed
        # live path of a temp entry -> the path it is renamed to (for ctx.links)
        self._renamed: dict[str, str] = {}
        # (atime, mtime) a directory will have once the held steps ran (the last held
        # step that sets them): what a later path must keep, not its times right now
        self._times: dict[tuple[int, int], tuple[int, int]] = {}

    def dir(self, fd: int) -> int:
        """Our own fd of the directory `fd` (kept until commit, which makes whatever
        changed in it durable)."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        own = self._dirs.get(key)
        if own is None:
            own = self._dirs[key] = os.dup(fd)
        return own

    def times(self, fd: int) -> tuple[int, int]:
        """The directory's (atime, mtime) as doing every step at once would have left
        them by now."""
        st = os.fstat(fd)
        return self._times.get((st.st_dev, st.st_ino), (st.st_atime_ns, st.st_mtime_ns))

    def set_times_later(self, fd: int, times: tuple[int, int],
                        step: Callable[[], None]) -> None:
        """Hold `step`, which leaves the directory `fd` with `times`."""
        st = os.fstat(fd)
        self._times[(st.st_dev, st.st_ino)] = times
        self._steps.append(step)

    def later(self, step: Callable[[], None]) -> None:
        self._steps.append(step)

    def rename_later(self, dir_fd: int, tmp: str, name: str, tmp_rel: str, rel: str,
                     remove_dir_first: int | None) -> None:
        """Rename dir_fd/tmp over dir_fd/name at commit; `remove_dir_first` (the live
        device) when the old entry is a directory to remove just before."""
        own = self.dir(dir_fd)
        self._temps.append((own, tmp))
        self._renamed[tmp_rel] = rel

        def rename() -> None:
            if remove_dir_first is not None:
                fileops.remove_tree_at(own, name, remove_dir_first)
            os.rename(tmp, name, src_dir_fd=own, dst_dir_fd=own)
            # rename(2) of two links of one inode does nothing: the name was relinked
            # already by an earlier step of this batch, so the temp link just goes
            left = fileops.lstat_at(own, tmp)
            if left is not None:
                now = fileops.lstat_at(own, name)
                if now is not None and (now.st_dev, now.st_ino) == (left.st_dev, left.st_ino):
                    os.unlink(tmp, dir_fd=own)

        self._steps.append(rename)

    def full(self) -> bool:
        return len(self._dirs) >= self.MAX_DIRS or len(self._steps) >= self.MAX_STEPS

    def commit(self, ctx: SyncContext) -> None:
        """On an error the fds stay open for `discard`, which the caller must call."""
        if self.before_commit is not None:
            self.before_commit()
        if self._temps:
            fileops.syncfs(self.live_fd)
        steps, self._steps = self._steps, []
        for step in steps:
            step()
        self._temps.clear()
        self._times.clear()
        if len(self._dirs) > self.FSYNC_DIRS:
            fileops.syncfs(self.live_fd)
        else:
            for fd in self._dirs.values():
                os.fsync(fd)
        self._close()
        for key, value in ctx.links.items():  # temp names are gone: point at the final
            if isinstance(value, str) and value in self._renamed:
                ctx.links[key] = self._renamed[value]
        self._renamed.clear()

    def discard(self, live_dev: int) -> None:
        """After a failure: remove the temp entries not renamed yet (best effort; a
        rerun of the same op removes any left)."""
        try:
            for dir_fd, tmp in self._temps:
                with suppress(OSError):
                    fileops.remove_tree_at(dir_fd, tmp, live_dev)
        finally:
            self._temps.clear()
            self._steps.clear()
            self._renamed.clear()
            self._times.clear()
            self._close()

    def _close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()


def _join(rel: str, name: str) -> str:
    return name if not rel else f"{rel}/{name}"


def _touch(ctx: SyncContext, dir_fd: int) -> None:
    """dir_fd is about to change at once: its batch makes it durable at commit."""
    if ctx.batch is not None:
        ctx.batch.dir(dir_fd)


def _foreign(ctx: SyncContext, rel: str, s: os.stat_result | None,
             d: os.stat_result | None, live_dev: int) -> bool:
    """Not part of the tree: the snapshot store itself, a nested subvolume or mount on
    the live side, another mount on the side being saved."""
    if rel in ctx.exclude:
        return True
    if d is not None and stat.S_ISDIR(d.st_mode) and d.st_dev != live_dev:
        return True
    return (s is not None and stat.S_ISDIR(s.st_mode) and ctx.src_dev is not None
            and s.st_dev != ctx.src_dev)


def _unchanged(ctx: SyncContext, s: os.stat_result, d: os.stat_result) -> bool:
    # In a btrfs snapshot an untouched file has the live inode's number, size, mtime and
    # ctime; ctime moves on every change of content or metadata and can't be set back.
    return (ctx.same_inodes and s.st_ino == d.st_ino and s.st_ctime_ns == d.st_ctime_ns
            and s.st_mtime_ns == d.st_mtime_ns and s.st_size == d.st_size
            and s.st_mode == d.st_mode and s.st_nlink == d.st_nlink)


def sync_entry(ctx: SyncContext, src_dir: int, dst_dir: int, name: str, rel: str,
               live_dev: int) -> None:
    """Make dst_dir/name what src_dir/name is (absent included). `rel` is the live path
    relative to the live root (for the hard-link map and reports)."""
    check_depth(rel)
    if ctx.batch is not None and ctx.batch.full():
        ctx.batch.commit(ctx)
    s = fileops.lstat_at(src_dir, name)
    d = fileops.lstat_at(dst_dir, name)
    if _foreign(ctx, rel, s, d, live_dev):
        ctx.skipped.append(rel)
        return
    if s is None:
        if d is not None:
            _touch(ctx, dst_dir)
            fileops.remove_tree_at(dst_dir, name, live_dev)
            ctx.changed += 1
        return
    if stat.S_ISDIR(s.st_mode):
        _sync_dir(ctx, src_dir, dst_dir, name, rel, s, d, live_dev)
        return
    if d is not None and _unchanged(ctx, s, d):
        if s.st_nlink > 1:
            ctx.links.setdefault((s.st_dev, s.st_ino), rel)
        return
    key = (s.st_dev, s.st_ino)
    if (stat.S_ISREG(s.st_mode) and s.st_nlink > 1 and key not in ctx.links
            and ctx.find_live_link is not None):
        found = ctx.find_live_link(s)
        if found is not None:
            ctx.links[key] = found
    if stat.S_ISREG(s.st_mode) and key in ctx.links:
        _relink(ctx, dst_dir, name, rel, d, live_dev, ctx.links[key])
        return
    xattrs = fileops.xattrs_at(src_dir, name, s)

    def make(tmp: str) -> None:
        if stat.S_ISREG(s.st_mode):
            sfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
            try:
                dfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o600, dir_fd=dst_dir)
                try:
                    fileops.clone_or_copy(sfd, dfd)
                finally:
                    os.close(dfd)
            finally:
                os.close(sfd)
        elif stat.S_ISLNK(s.st_mode):
            os.symlink(os.readlink(name, dir_fd=src_dir), tmp, dir_fd=dst_dir)
        else:  # fifo, socket, device
            os.mknod(tmp, stat.S_IFMT(s.st_mode) | 0o600, s.st_rdev, dir_fd=dst_dir)
        fileops.apply_metadata(dst_dir, tmp, s, xattrs)

    held = _replace(ctx, dst_dir, name, rel, d, live_dev, make)
    if s.st_nlink > 1:  # where the inode is now (its temp name until a batch commits)
        ctx.links[key] = held


def _relink(ctx: SyncContext, dst_dir: int, name: str, rel: str,
            d: os.stat_result | None, live_dev: int, first: str | int) -> None:
    """Another name of an inode restored already: a hard link to it again."""
    if isinstance(first, int):
        fst = os.fstat(first)
    else:
        fst = os.stat(first, dir_fd=ctx.live_root_fd, follow_symlinks=False)
    if (d is not None and not stat.S_ISDIR(d.st_mode)
            and (fst.st_dev, fst.st_ino) == (d.st_dev, d.st_ino)):
        return

    def link(tmp: str) -> None:
        if isinstance(first, int):  # linkat of an fd: through its /proc magic link
            os.link(f"/proc/self/fd/{first}", tmp, dst_dir_fd=dst_dir, follow_symlinks=True)
        else:
            os.link(first, tmp, src_dir_fd=ctx.live_root_fd, dst_dir_fd=dst_dir,
                    follow_symlinks=False)

    _replace(ctx, dst_dir, name, rel, d, live_dev, link)


def _replace(ctx: SyncContext, dst_dir: int, name: str, rel: str,
             d: os.stat_result | None, live_dev: int, make: Callable[[str], None]) -> str:
    """Make the new entry under a temp name and rename it over `name` (`rel` from the
    live root) at once, or at the batch's commit. Returns the live path that holds the
    new entry now."""
    tmp = ctx.tmp_name()
    tmp_rel = rel[:len(rel) - len(name)] + tmp
    old_is_dir = d is not None and stat.S_ISDIR(d.st_mode)
    try:
        make(tmp)
        if ctx.batch is not None:
            ctx.batch.rename_later(dst_dir, tmp, name, tmp_rel, rel,
                                   live_dev if old_is_dir else None)
        else:
            if old_is_dir:
                fileops.remove_tree_at(dst_dir, name, live_dev)
            os.rename(tmp, name, src_dir_fd=dst_dir, dst_dir_fd=dst_dir)
    except BaseException:
        fileops.remove_tree_at(dst_dir, tmp, live_dev)
        raise
    ctx.changed += 1
    return tmp_rel if ctx.batch is not None else rel


def _sync_dir(ctx: SyncContext, src_dir: int, dst_dir: int, name: str, rel: str,
              s: os.stat_result, d: os.stat_result | None, live_dev: int) -> None:
    if (ctx.unchanged is not None and d is not None and stat.S_ISDIR(d.st_mode)
            and d.st_ino == s.st_ino and ctx.unchanged.dir(rel)):
        return  # the snapshot's own directory, untouched since: nothing to restore in it
    if d is not None and not stat.S_ISDIR(d.st_mode):
        _touch(ctx, dst_dir)
        os.unlink(name, dir_fd=dst_dir)
        d = None
    if d is None:
        _touch(ctx, dst_dir)
        os.mkdir(name, 0o700, dir_fd=dst_dir)
        ctx.changed += 1
    sfd = fileops.open_dir_at(src_dir, name)
    try:
        dfd = fileops.open_dir_at(dst_dir, name)
        try:
            sync_children(ctx, sfd, dfd, rel, live_dev)
            if ctx.batch is None:
                if d is None or not _dir_meta_equal(s, os.fstat(dfd), sfd, dfd):
                    fileops.apply_metadata(dst_dir, name, s, fileops.read_xattrs(sfd))
            else:  # after the renames into it, which move its times
                ctx.batch.set_times_later(
                    dfd, (s.st_atime_ns, s.st_mtime_ns),
                    _dir_meta_step(ctx.batch.dir(dfd), s, fileops.read_xattrs(sfd),
                                   force=d is None))
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _dir_meta_step(dfd: int, s: os.stat_result, xattrs: dict[str, bytes],
                   force: bool) -> Callable[[], None]:
    def apply() -> None:
        now = os.fstat(dfd)
        if force or not (s.st_mode == now.st_mode and s.st_uid == now.st_uid
                         and s.st_gid == now.st_gid and s.st_mtime_ns == now.st_mtime_ns
                         and s.st_atime_ns == now.st_atime_ns
                         and fileops.read_xattrs(dfd) == xattrs):
            fileops.apply_metadata_fd(dfd, s, xattrs)

    return apply


def sync_children(ctx: SyncContext, sfd: int, dfd: int, rel: str, live_dev: int) -> None:
    """Make the entries of the open directory dfd those of sfd (not the dir's own
    metadata)."""
    own = ctx.own_prefix()  # this run's temps, renamed at the batch's commit
    if ctx.unchanged is None:
        src_names = set(os.listdir(sfd))
        live_names = set(os.listdir(dfd))
        same: set[str] = set()
    else:  # names and inode numbers from the listings alone: no stat for what is same
        src = _inodes(sfd)
        live = _inodes(dfd)
        src_names, live_names = set(src), set(live)
        same = {n for n, (ino, is_dir) in src.items()
                if not is_dir and live.get(n) == (ino, False) and ctx.unchanged.inode(ino)}
    extra = {n for n in live_names if not n.startswith(own)} - src_names
    if ctx.keep_extra:  # still clear what a killed run of this op left
        extra = {n for n in extra if n.startswith(f"{TMP_PREFIX}{ctx.op}-")}
    for child in sorted(extra):
        sync_entry(ctx, sfd, dfd, child, _join(rel, child), live_dev)
    for child in sorted(src_names - same):
        sync_entry(ctx, sfd, dfd, child, _join(rel, child), live_dev)


def _inodes(dir_fd: int) -> dict[str, tuple[int, bool]]:
    """{name: (inode number, is a directory)} from one listing (d_ino, d_type)."""
    with os.scandir(dir_fd) as it:
        return {e.name: (e.inode(), e.is_dir(follow_symlinks=False)) for e in it}


def _dir_meta_equal(s: os.stat_result, d: os.stat_result, sfd: int, dfd: int) -> bool:
    return (s.st_mode == d.st_mode and s.st_uid == d.st_uid and s.st_gid == d.st_gid
            and s.st_mtime_ns == d.st_mtime_ns and s.st_atime_ns == d.st_atime_ns
            and fileops.read_xattrs(sfd) == fileops.read_xattrs(dfd))


def sync_dir_metadata(src_dir_fd: int, dst_parent: int, name: str) -> None:
    """Only the metadata of a directory (after its children were restored)."""
    s = os.fstat(src_dir_fd)
    fileops.apply_metadata(dst_parent, name, s, fileops.read_xattrs(src_dir_fd))


def remove_leftovers(dir_fd: int, op: str, live_dev: int) -> int:
    """Remove temp entries a killed run of `op` left in one directory."""
    prefix = f"{TMP_PREFIX}{op}-"
    n = 0
    for child in os.listdir(dir_fd):
        if child.startswith(prefix):
            fileops.remove_tree_at(dir_fd, child, live_dev)
            n += 1
    return n


def walk_dir(root_fd: int, parts: tuple[str, ...]) -> int | None:
    """Open the directory at `parts` under root_fd without following any symlink;
    None when a component is missing. The caller closes the fd."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                nfd = fileops.open_dir_at(fd, part)
            except FileNotFoundError:
                os.close(fd)
                return None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeSnapshotPath(
                        f"{'/'.join(parts)!r}: {part!r} is a symlink or not a directory"
                    ) from None
                raise
            os.close(fd)
            fd = nfd
    except BaseException:
        with suppress(OSError):
            os.close(fd)
        raise
    return fd


def _make_parents(ctx: SyncContext, src_root: int, live_root: int,
                  parts: tuple[str, ...], live_dev: int) -> int:
    """The live parent directory of a path to restore, made (as it is in the saved tree,
    metadata included) where it is missing."""
    sfd = os.dup(src_root)
    lfd = os.dup(live_root)
    try:
        for part in parts:
            nsfd = fileops.open_dir_at(sfd, part)
            os.close(sfd)
            sfd = nsfd
            if fileops.lstat_at(lfd, part) is None:
                _touch(ctx, lfd)
                os.mkdir(part, 0o700, dir_fd=lfd)
                sync_dir_metadata(sfd, lfd, part)
                ctx.changed += 1
            nlfd = walk_dir(lfd, (part,))
            if nlfd is None:
                raise FileNotFoundError(part)
            os.close(lfd)
            lfd = nlfd
        return lfd
    finally:
        os.close(sfd)


def restore_paths(ctx: SyncContext, src_root: int, live_root: int,
                  paths: list[tuple[str, ...]],
                  before_each: Callable[[str], None] | None = None) -> None:
    """Make each path (components, () = the whole tree) of the live tree what it is in
    the saved tree. The parent's own times are kept: an undo changes only what it was
    asked to. Consecutive paths in one directory share one walk to it (a sibling's
    restore never replaces the directory they are in)."""
    live_dev = os.fstat(live_root).st_dev
    held: tuple[tuple[str, ...], int | None, int] | None = None  # parent, src fd, live fd
    try:
        for parts in paths:
            rel = "/".join(parts)
            if before_each is not None:
                before_each(rel)
            if held is not None and (not parts or held[0] != parts[:-1]):
                _close_held(held)
                held = None
            if not parts:
                sync_children(ctx, src_root, live_root, "", live_dev)
                if ctx.batch is None:
                    sync_dir_metadata(src_root, live_root, ".")
                else:
                    sst = os.fstat(src_root)
                    ctx.batch.set_times_later(
                        live_root, (sst.st_atime_ns, sst.st_mtime_ns),
                        _dir_meta_step(ctx.batch.dir(live_root), sst,
                                       fileops.read_xattrs(src_root), force=True))
                continue
            if held is None:
                held = _open_parents(ctx, src_root, live_root, parts[:-1], live_dev)
                if held is None:
                    continue  # in neither tree
            _restore_one(ctx, held[1], held[2], parts[-1], rel, live_dev)
    finally:
        if held is not None:
            _close_held(held)


def _close_held(held: tuple[tuple[str, ...], int | None, int]) -> None:
    try:
        if held[1] is not None:
            os.close(held[1])
    finally:
        os.close(held[2])


def _open_parents(ctx: SyncContext, src_root: int, live_root: int,
                  parent: tuple[str, ...],
                  live_dev: int) -> tuple[tuple[str, ...], int | None, int] | None:
    """(parent, saved dir fd or None, live dir fd) of a path's parent; the live one is
    made where the saved tree has it; None when it is in neither tree."""
    src_parent = walk_dir(src_root, parent)
    try:
        if src_parent is None:
            live_parent = walk_dir(live_root, parent)
        else:
            live_parent = (walk_dir(live_root, parent)
                           or _make_parents(ctx, src_root, live_root, parent, live_dev))
    except BaseException:
        if src_parent is not None:
            os.close(src_parent)
        raise
    if live_parent is None:
        if src_parent is not None:
            os.close(src_parent)
        return None
    return parent, src_parent, live_parent


def _restore_one(ctx: SyncContext, src_parent: int | None, live_parent: int, name: str,
                 rel: str, live_dev: int) -> None:
    if ctx.batch is None:
        st = os.fstat(live_parent)
        before = (st.st_atime_ns, st.st_mtime_ns)
    else:
        before = ctx.batch.times(live_parent)
    if src_parent is None:  # not in the saved tree at all: remove it
        if fileops.lstat_at(live_parent, name) is not None:
            _touch(ctx, live_parent)
            fileops.remove_tree_at(live_parent, name, live_dev)
            ctx.changed += 1
    else:
        sync_entry(ctx, src_parent, live_parent, name, rel, live_dev)
    if ctx.batch is None:
        _keep_times(live_parent, before)()
    else:  # after the rename into it
        ctx.batch.set_times_later(live_parent, before,
                                  _keep_times(ctx.batch.dir(live_parent), before))


def _keep_times(dir_fd: int, before: tuple[int, int]) -> Callable[[], None]:
    """Set the directory's (atime, mtime) back to `before` if they moved."""

    def restore() -> None:
        after = os.fstat(dir_fd)
        if (after.st_atime_ns, after.st_mtime_ns) != before:
            os.utime(dir_fd, ns=before)

    return restore


def remove_undo_leftovers(open_live: Callable[[], int], op: str, paths: Sequence[str]) -> None:
    """Remove the temp entries a killed undo `op` left next to the paths it restored
    (every backend's undo writes them the same way); `open_live` opens the live tree."""
    live = open_live()
    try:
        _remove_undo_leftovers(live, op, paths)
    finally:
        os.close(live)


def _remove_undo_leftovers(live: int, op: str, paths: Sequence[str]) -> None:
    dev = os.fstat(live).st_dev
    for p in paths:
        parts = split_rel(p) if p else ()
        parent = walk_dir(live, parts[:-1])
        if parent is not None:
            try:
                remove_leftovers(parent, op, dev)
            finally:
                os.close(parent)
