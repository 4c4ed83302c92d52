"""Check one planned item again and remove it, from a pinned parent directory fd.

The parent is reached from the root's fd component by component with O_NOFOLLOW; at
and below the item's tree (its anchor) every component must be on the item's
filesystem and no component may be a mount point. The entry itself is compared with
what the preview saw (type, inode, device, owner; size and mtime for non-directories)
and removed with unlinkat/rmdir on the pinned fd: a directory swapped for a symlink
after the check can't redirect the removal, and nothing is ever followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from oseprovd.errors import InvalidArguments
from oseprovd.system.rootfs import split_rel

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

# Never removed, nor anything under them, whatever a profile or a plan says.
ALWAYS_REFUSED = ("proc", "sys", "dev", "boot", "etc/fstab", "run")
KIND_FMT = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


@dataclass(frozen=True)
class Planned:
    rel: str
    kind: str
    size: int
    uid: int
    ino: int
    dev: int
    mtime_ns: int
    anchor: str


def refused_reason(rel: str, refused: frozenset[str]) -> str | None:
    if rel == "":
        return "the root itself is never removed"
    for r in refused:
        if rel == r or rel.startswith(r + "/"):
            return f"/{r} is never touched by a reset"
        if r.startswith(rel + "/"):
            return f"it holds /{r}, which is never touched by a reset"
    return None


def under(rel: str, top: str) -> bool:
    return rel.startswith(top + "/")


class Remover:
    """Holds the root fd and the last parent fd (items come in reverse path order, so
    siblings arrive together)."""

    def __init__(self, root_fd: int, refused: frozenset[str], mounts: frozenset[str],
                 dry_run: bool, before_remove: Callable[[str], None] | None = None) -> None:
        self.root_fd = root_fd
        self.refused = refused
        self.mounts = mounts
        self.dry_run = dry_run
        self.before_remove = before_remove
        self._parent_rel: str | None = None
        self._mounts_under: dict[str, tuple[str, ...]] = {}
        self._parent_fd = -1

    def close(self) -> None:
        if self._parent_fd >= 0:
            os.close(self._parent_fd)
            self._parent_fd = -1
            self._parent_rel = None

    def _open_parent(self, parts: tuple[str, ...], item: Planned) -> int:
        parent_rel = "/".join(parts[:-1])
        if parent_rel == self._parent_rel and self._parent_fd >= 0:
            return self._parent_fd
        self.close()
        anchor_depth = len(split_rel(item.anchor))
        fd = os.dup(self.root_fd)
        try:
            for depth, part in enumerate(parts[:-1], start=1):
                nfd = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = nfd
                if depth >= anchor_depth and os.fstat(fd).st_dev != item.dev:
                    raise _Skip("a directory on the way is on another filesystem now")
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _Skip("a directory on the way is a symlink or not a directory "
                            "now") from None
            if exc.errno == errno.ENOENT:
                raise _Gone() from None
            raise
        except BaseException:
            os.close(fd)
            raise
        self._parent_fd, self._parent_rel = fd, parent_rel
        return fd

    def check(self, item: Planned) -> tuple[int, str]:
        """The pinned parent fd and name, after every check; raises _Skip or _Gone."""
        try:
            parts = split_rel(item.rel)
        except InvalidArguments as exc:
            raise _Skip(str(exc)) from None
        if "/".join(parts) != item.rel:
            raise _Skip("the path is not in normal form")
        reason = refused_reason(item.rel, self.refused)
        if reason is not None:
            raise _Skip(reason)
        if not under(item.rel, item.anchor):
            raise _Skip(f"it is not inside /{item.anchor}, the tree its rule allows")
        inside = self._mounts_under.get(item.anchor)
        if inside is None:
            inside = self._mounts_under[item.anchor] = tuple(
                m for m in self.mounts if under(m, item.anchor))
        for m in inside:
            if item.rel == m or under(item.rel, m):
                raise _Skip(f"/{m} is a mount point")
        fd = self._open_parent(parts, item)
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise _Gone() from None
        want = KIND_FMT.get(item.kind)
        if want is not None and stat.S_IFMT(st.st_mode) != want:
            raise _Skip(f"it is no longer a {item.kind}")
        if (st.st_ino, st.st_dev) != (item.ino, item.dev):
            raise _Skip("it was replaced since the preview (another inode)")
        if st.st_uid != item.uid:
            raise _Skip(f"its owner changed since the preview ({item.uid} -> {st.st_uid})")
        if item.kind != "dir" and (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
            raise _Skip("it was modified since the preview")
        return fd, name

    def remove(self, item: Planned) -> str | None:
        """None when removed (or already gone: "gone"); else why it was skipped."""
        try:
            fd, name = self.check(item)
        except _Gone:
            return "gone"
        except _Skip as skip:
            return str(skip)
        if self.dry_run:
            return None
        if self.before_remove is not None:
            self.before_remove(item.rel)
        try:
            if item.kind == "dir":
                os.rmdir(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            return "gone"
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return "new entries appeared in it since the preview"
            if exc.errno == errno.EBUSY:
                return "it is a mount point now"
            if exc.errno in (errno.EISDIR, errno.ENOTDIR):
                return "its type changed since the preview"
            if exc.errno in (errno.EPERM, errno.EACCES):
                return f"the filesystem refused: {exc.strerror}"
            raise
        return None


class _Skip(Exception):
    pass


class _Gone(Exception):
    pass
