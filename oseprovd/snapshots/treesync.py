"""Make one entry of a live tree identical to the same entry of a saved tree.

Used by file-level undo (saved tree = a btrfs snapshot) and by the copy backend's
restore (saved tree = its store). Identical means bytes, holes, owner, mode, atime and
mtime, xattrs (ACLs included), symlink targets, device numbers and which names are hard
links of each other. Each replacement is a temp entry in the same directory renamed over
the old one, so a reader never sees a half-written file and a killed run can simply be
run again.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

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

    run: str = field(default_factory=lambda: secrets.token_hex(4))

    def tmp_name(self) -> str:
        # op first, so recovery finds leftovers of any run of this op by prefix
        self.counter += 1
        return f"{TMP_PREFIX}{self.op}-{self.run}-{self.counter}"


def _join(rel: str, name: str) -> str:
    return name if not rel else f"{rel}/{name}"


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
    s = fileops.lstat_at(src_dir, name)
    d = fileops.lstat_at(dst_dir, name)
    if _foreign(ctx, rel, s, d, live_dev):
        ctx.skipped.append(rel)
        return
    if s is None:
        if d is not None:
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
        _relink(ctx, dst_dir, name, d, live_dev, ctx.links[key])
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

    _replace(ctx, dst_dir, name, d, live_dev, make)
    if s.st_nlink > 1:
        ctx.links[key] = rel


def _relink(ctx: SyncContext, dst_dir: int, name: str, d: os.stat_result | None,
            live_dev: int, first: str | int) -> None:
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

    _replace(ctx, dst_dir, name, d, live_dev, link)


def _replace(ctx: SyncContext, dst_dir: int, name: str, d: os.stat_result | None,
             live_dev: int, make: Callable[[str], None]) -> None:
    tmp = ctx.tmp_name()
    try:
        make(tmp)
        if d is not None and stat.S_ISDIR(d.st_mode):
            fileops.remove_tree_at(dst_dir, name, live_dev)
        os.rename(tmp, name, src_dir_fd=dst_dir, dst_dir_fd=dst_dir)
    except BaseException:
        fileops.remove_tree_at(dst_dir, tmp, live_dev)
        raise
    ctx.changed += 1


def _sync_dir(ctx: SyncContext, src_dir: int, dst_dir: int, name: str, rel: str,
              s: os.stat_result, d: os.stat_result | None, live_dev: int) -> None:
    if d is not None and not stat.S_ISDIR(d.st_mode):
        os.unlink(name, dir_fd=dst_dir)
        d = None
    if d is None:
        os.mkdir(name, 0o700, dir_fd=dst_dir)
        ctx.changed += 1
    sfd = fileops.open_dir_at(src_dir, name)
    try:
        dfd = fileops.open_dir_at(dst_dir, name)
        try:
            sync_children(ctx, sfd, dfd, rel, live_dev)
            now = os.fstat(dfd)
            if d is None or not _dir_meta_equal(s, now, sfd, dfd):
                fileops.apply_metadata(dst_dir, name, s, fileops.read_xattrs(sfd))
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def sync_children(ctx: SyncContext, sfd: int, dfd: int, rel: str, live_dev: int) -> None:
    """Make the entries of the open directory dfd those of sfd (not the dir's own
    metadata)."""
    src_names = set(os.listdir(sfd))
    extra = set(os.listdir(dfd)) - src_names
    if ctx.keep_extra:  # still clear what a killed run of this op left
        extra = {n for n in extra if n.startswith(f"{TMP_PREFIX}{ctx.op}-")}
    for child in sorted(extra):
        sync_entry(ctx, sfd, dfd, child, _join(rel, child), live_dev)
    for child in sorted(src_names):
        sync_entry(ctx, sfd, dfd, child, _join(rel, child), live_dev)


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
    asked to."""
    live_dev = os.fstat(live_root).st_dev
    for parts in paths:
        rel = "/".join(parts)
        if before_each is not None:
            before_each(rel)
        if not parts:
            sync_children(ctx, src_root, live_root, "", live_dev)
            sync_dir_metadata(src_root, live_root, ".")
            continue
        src_parent = walk_dir(src_root, parts[:-1])
        try:
            if src_parent is None:
                live_parent = walk_dir(live_root, parts[:-1])
            else:
                live_parent = (walk_dir(live_root, parts[:-1])
                               or _make_parents(ctx, src_root, live_root, parts[:-1],
                                                live_dev))
        except BaseException:
            if src_parent is not None:
                os.close(src_parent)
            raise
        if live_parent is None:
            if src_parent is not None:
                os.close(src_parent)
            continue  # in neither tree
        try:
            before = os.fstat(live_parent)
            if src_parent is None:  # not in the saved tree at all: remove it
                if fileops.lstat_at(live_parent, parts[-1]) is not None:
                    fileops.remove_tree_at(live_parent, parts[-1], live_dev)
                    ctx.changed += 1
            else:
                sync_entry(ctx, src_parent, live_parent, parts[-1], rel, live_dev)
            after = os.fstat(live_parent)
            if (after.st_mtime_ns, after.st_atime_ns) != (before.st_mtime_ns,
                                                           before.st_atime_ns):
                os.utime(live_parent, ns=(before.st_atime_ns, before.st_mtime_ns))
        finally:
            if src_parent is not None:
                os.close(src_parent)
            os.close(live_parent)


def remove_undo_leftovers(live: int, op: str, paths: Sequence[str]) -> None:
    """Remove the temp entries a killed undo `op` left next to the paths it restored
    (every backend's undo writes them the same way)."""
    dev = os.fstat(live).st_dev
    for p in paths:
        parts = split_rel(p) if p else ()
        parent = walk_dir(live, parts[:-1])
        if parent is not None:
            try:
                remove_leftovers(parent, op, dev)
            finally:
                os.close(parent)
