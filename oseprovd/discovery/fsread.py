"""Small, bounded, read-only file access for collectors.

Two kinds of reads:
- kernel pseudo files (/proc, /sys): plain reads with a size limit; a missing or
  unreadable attribute is None, never an exception (sysfs attributes often fail with
  EINVAL/ENODEV/EIO, e.g. the speed of a link that is down).
- files in the target root: symlinks are resolved *inside* the root (chroot semantics,
  like openat2's RESOLVE_IN_ROOT), so a link in a sandbox tree never reads the host,
  and no lookup ever enters a network or automount filesystem.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oseprovd.discovery.roots import SystemRoots

KIB = 1024
DEFAULT_LIMIT = 1 << 20

# Filesystems a collector must never walk into: looking inside can hang on a dead
# server, send traffic, or trigger an automount.
REMOTE_FSTYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs",
    "fuse.sshfs", "fuse.glusterfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "9p",
    "autofs", "davfs", "fuse.davfs2", "lustre", "gfs2", "ocfs2", "beegfs",
})

_SOFT_ERRNOS = frozenset({
    errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EINVAL, errno.ENODEV,
    errno.EIO, errno.ENXIO, errno.EOPNOTSUPP, errno.ELOOP, errno.EBUSY, errno.EAGAIN,
})


class RemoteFilesystem(OSError):
    """A lookup would have entered a network or automount filesystem."""


def read_bytes(path: Path, limit: int = DEFAULT_LIMIT) -> bytes | None:
    """Up to `limit` bytes of a kernel pseudo file, or None if it can't be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno in _SOFT_ERRNOS:
            return None
        raise
    try:
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = os.read(fd, min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        if exc.errno in _SOFT_ERRNOS:
            return None
        raise
    finally:
        os.close(fd)


def read_text(path: Path, limit: int = DEFAULT_LIMIT) -> str | None:
    data = read_bytes(path, limit)
    return None if data is None else data.decode("utf-8", "replace")


def read_attr(path: Path) -> str | None:
    """A sysfs attribute stripped of whitespace; '' and unreadable both give None."""
    text = read_text(path, 64 * KIB)
    if text is None:
        return None
    text = text.strip()
    return text or None


def read_int(path: Path) -> int | None:
    text = read_attr(path)
    if text is None:
        return None
    try:
        return int(text, 0) if text.startswith("0x") else int(text)
    except ValueError:
        return None


def listdir(path: Path) -> list[str]:
    """Sorted entry names, [] if the directory is missing or unreadable."""
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        if exc.errno in _SOFT_ERRNOS:
            return []
        raise


def link_name(path: Path) -> str | None:
    """The last component of a symlink's target (e.g. a driver's name), or None."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def parse_cpulist(text: str | None) -> list[int]:
    """Kernel cpu/node list syntax: '0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]."""
    result: list[int] = []
    if not text:
        return result
    for raw in text.strip().split(","):
        part = raw.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            result.extend(range(int(lo), int(hi) + 1))
        else:
            result.append(int(part))
    return result


def unescape_mount_field(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mountpoint: str
    options: str
    fstype: str
    source: str
    super_options: str

    @property
    def remote(self) -> bool:
        return self.fstype in REMOTE_FSTYPES


def parse_mountinfo(text: str) -> list[MountEntry]:
    entries: list[MountEntry] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 6 or len(fields) < sep + 3:
            continue
        major, _, minor = fields[2].partition(":")
        entries.append(MountEntry(
            mount_id=int(fields[0]), parent_id=int(fields[1]),
            major=int(major), minor=int(minor or 0),
            root=unescape_mount_field(fields[3]),
            mountpoint=unescape_mount_field(fields[4]),
            options=fields[5], fstype=fields[sep + 1],
            source=unescape_mount_field(fields[sep + 2]),
            super_options=fields[sep + 3] if len(fields) > sep + 3 else "",
        ))
    return entries


class MountTable:
    """The mounts as seen by this process, to keep walks off network filesystems."""

    def __init__(self, entries: list[MountEntry]) -> None:
        self.entries = entries
        self._remote = {e.mountpoint for e in entries if e.remote}

    @classmethod
    def load(cls, proc: Path) -> MountTable:
        text = read_text(proc / "self" / "mountinfo", 8 << 20)
        return cls(parse_mountinfo(text or ""))

    def is_remote_mountpoint(self, path: str) -> bool:
        return path in self._remote

    def is_under_remote(self, path: str) -> bool:
        """True if `path` is a remote mount point or lies beneath one."""
        if not self._remote:
            return False
        probe = path.rstrip("/") or "/"
        while True:
            if probe in self._remote:
                return True
            if probe == "/":
                return False
            probe = os.path.dirname(probe) or "/"


class TargetReader:
    """Read-only access to files of the target root, symlinks resolved inside it."""

    MAX_LINKS = 40

    def __init__(self, root: Path, mounts: MountTable | None = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.mounts = mounts or MountTable([])

    def _host(self, parts: list[str]) -> str:
        return os.path.join(str(self.root), *parts) if parts else str(self.root)

    def resolve(self, rel: str) -> Path | None:
        """Host path of `rel` inside the root with every symlink clamped to the root.

        None if some component is missing. Raises RemoteFilesystem rather than look
        inside a network or automount filesystem.
        """
        pending = [p for p in rel.split("/") if p not in ("", ".")]
        done: list[str] = []
        links = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            here = self._host(done)
            if self.mounts.is_remote_mountpoint(here):
                raise RemoteFilesystem(errno.EREMOTE, "network filesystem", here)
            candidate = os.path.join(here, part)
            try:
                st = os.lstat(candidate)
            except OSError as exc:
                if exc.errno in _SOFT_ERRNOS:
                    return None
                raise
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > self.MAX_LINKS:
                    return None
                target = os.readlink(candidate)
                if target.startswith("/"):
                    done = []
                pending[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            done.append(part)
        final = self._host(done)
        if self.mounts.is_under_remote(final):
            raise RemoteFilesystem(errno.EREMOTE, "network filesystem", final)
        return Path(final)

    def _resolve_soft(self, rel: str) -> Path | None:
        """resolve(), with a network filesystem on the way counting as 'not there'."""
        try:
            return self.resolve(rel)
        except RemoteFilesystem:
            return None

    def read_bytes(self, rel: str, limit: int = DEFAULT_LIMIT) -> bytes | None:
        """The file's bytes; None if missing, not a regular file, or on a network fs."""
        path = self._resolve_soft(rel)
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_NOCTTY)
        except OSError as exc:
            if exc.errno in _SOFT_ERRNOS or exc.errno == errno.EISDIR:
                return None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None  # never block on a FIFO or read a device
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read(limit)
        finally:
            os.close(fd)

    def read_text(self, rel: str, limit: int = DEFAULT_LIMIT) -> str | None:
        data = self.read_bytes(rel, limit)
        return None if data is None else data.decode("utf-8", "replace")

    def exists(self, rel: str) -> bool:
        return self._resolve_soft(rel) is not None

    def lstat(self, rel: str) -> os.stat_result | None:
        """lstat of the last component (its parents resolved inside the root)."""
        head, _, name = rel.rstrip("/").rpartition("/")
        parent = self._resolve_soft(head)
        if parent is None or self.mounts.is_remote_mountpoint(str(parent / name)):
            return None
        try:
            return os.lstat(parent / name)
        except OSError:
            return None

    def readlink(self, rel: str) -> str | None:
        head, _, name = rel.rstrip("/").rpartition("/")
        parent = self._resolve_soft(head)
        if parent is None:
            return None
        try:
            return os.readlink(parent / name)
        except OSError:
            return None

    def listdir(self, rel: str) -> list[str]:
        path = self._resolve_soft(rel)
        if path is None or self.mounts.is_remote_mountpoint(str(path)):
            return []
        return listdir(path)

    def iter_files(self, rel: str) -> Iterator[tuple[str, os.stat_result]]:
        """(name, lstat) of the entries of a directory, not recursive."""
        path = self._resolve_soft(rel)
        if path is None or self.mounts.is_remote_mountpoint(str(path)):
            return
        for name in listdir(path):
            try:
                yield name, os.lstat(path / name)
            except OSError:
                continue


def target_reader(roots: SystemRoots) -> TargetReader:
    """A reader of the target root that knows this system's network mounts."""
    return TargetReader(roots.target, MountTable.load(roots.proc))
