"""Low-level file operations that keep everything a file is: bytes, holes, owner, mode,
times, xattrs (POSIX ACLs are the xattrs system.posix_acl_*), symlinks and hard links.

Everything works on directory fds plus a single name, never on a path walked by the
kernel, so a symlink planted in a tree can't redirect an operation.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

FICLONE = 0x40049409  # _IOW(0x94, 9, int)
RENAME_EXCHANGE = 2
AT_FDCWD = -100
_COPY_CHUNK = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)


class Meta(Protocol):
    """What apply_metadata needs: an os.stat_result, or a saved FileMeta."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...
    @property
    def st_atime_ns(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...


@dataclass(frozen=True)
class FileMeta:
    st_mode: int
    st_uid: int
    st_gid: int
    st_atime_ns: int
    st_mtime_ns: int


def proc_path(dir_fd: int, name: str | bytes) -> bytes:
    """A path to `name` in an open directory; only the last component is looked up."""
    return b"/proc/self/fd/%d/%s" % (dir_fd, os.fsencode(name))


def lstat_at(dir_fd: int, name: str | bytes) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_dir_at(dir_fd: int, name: str | bytes) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                   dir_fd=dir_fd)


def exchange_at(dir_fd_a: int, name_a: str, dir_fd_b: int, name_b: str) -> None:
    """Swap two entries atomically (renameat2 RENAME_EXCHANGE): never a moment without one."""
    rc = _libc.renameat2(dir_fd_a, os.fsencode(name_a), dir_fd_b, os.fsencode(name_b),
                         RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"renameat2(RENAME_EXCHANGE): {os.strerror(err)}", name_a)


def clone_or_copy(src_fd: int, dst_fd: int) -> bool:
    """Make dst's content src's: a reflink where the filesystem can (shares extents, so
    holes and all), else a copy that keeps holes. Returns True when reflinked."""
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
        os.ftruncate(dst_fd, os.fstat(src_fd).st_size)  # dst may have been longer
        return True
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY,
                             errno.EPERM):
            raise
    size = os.fstat(src_fd).st_size
    os.ftruncate(dst_fd, 0)
    offset = 0
    while offset < size:
        try:
            data_start = os.lseek(src_fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                break
            raise
        hole_start = os.lseek(src_fd, data_start, os.SEEK_HOLE)
        pos = data_start
        while pos < hole_start:
            n = min(_COPY_CHUNK, hole_start - pos)
            chunk = os.pread(src_fd, n, pos)
            if not chunk:
                break
            view = memoryview(chunk)
            wpos = pos
            while view:
                written = os.pwrite(dst_fd, view, wpos)
                view = view[written:]
                wpos += written
            pos += len(chunk)
        offset = hole_start
    os.ftruncate(dst_fd, size)  # a trailing hole
    return False


def read_xattrs(target: int | bytes) -> dict[str, bytes]:
    """All xattrs of an fd or (for symlinks and devices) a /proc path, not following."""
    try:
        if isinstance(target, int):
            names = os.listxattr(target)
            return {n: os.getxattr(target, n) for n in names}
        names = os.listxattr(target, follow_symlinks=False)
        return {n: os.getxattr(target, n, follow_symlinks=False) for n in names}
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise


def _write_xattrs(target: int | bytes, want: dict[str, bytes]) -> None:
    follow = isinstance(target, int)
    have = read_xattrs(target)
    for name in have:
        if name not in want:
            with suppress(OSError):  # e.g. security.selinux may not be removable
                os.removexattr(target, name, follow_symlinks=follow)
    for name, value in want.items():
        if have.get(name) != value:
            os.setxattr(target, name, value, follow_symlinks=follow)


def apply_metadata(dst_dir_fd: int, name: str | bytes, src: Meta,
                   xattrs: dict[str, bytes]) -> None:
    """Owner, xattrs (ACLs), mode and times of `src` onto `name`, in an order where each
    step cannot undo an earlier one: chown clears setuid and an ACL sets the group bits,
    so mode comes after both; writing anything touches times, so times come last."""
    st = os.stat(name, dir_fd=dst_dir_fd, follow_symlinks=False)
    is_link = stat.S_ISLNK(st.st_mode)
    target: int | bytes
    fd = -1
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dst_dir_fd)
        target = fd
    else:
        target = proc_path(dst_dir_fd, name)
    try:
        if (st.st_uid, st.st_gid) != (src.st_uid, src.st_gid):
            os.chown(name, src.st_uid, src.st_gid, dir_fd=dst_dir_fd, follow_symlinks=False)
        _write_xattrs(target, xattrs)
        if not is_link:
            os.chmod(fd if fd >= 0 else target, stat.S_IMODE(src.st_mode))
        os.utime(name, ns=(src.st_atime_ns, src.st_mtime_ns), dir_fd=dst_dir_fd,
                 follow_symlinks=False)
    finally:
        if fd >= 0:
            os.close(fd)


def xattrs_at(dir_fd: int, name: str | bytes, st: os.stat_result) -> dict[str, bytes]:
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)
        try:
            return read_xattrs(fd)
        finally:
            os.close(fd)
    return read_xattrs(proc_path(dir_fd, name))


def remove_tree_at(dir_fd: int, name: str | bytes, dev: int | None = None,
                   _depth: int = 0) -> None:
    """Remove `name` and everything under it without following symlinks; refuses to
    descend into another filesystem or subvolume (a different st_dev)."""
    if _depth > 400:
        raise OSError(errno.ELOOP, "tree too deep to remove", os.fsdecode(name))
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    if dev is not None and st.st_dev != dev:
        raise OSError(errno.EXDEV, "refusing to remove across a mount or subvolume",
                      os.fsdecode(name))
    sub = open_dir_at(dir_fd, name)
    try:
        for child in os.listdir(sub):
            remove_tree_at(sub, child, st.st_dev, _depth + 1)
    finally:
        os.close(sub)
    os.rmdir(name, dir_fd=dir_fd)


def fsync_dir(dir_fd: int) -> None:
    os.fsync(dir_fd)


def syncfs(fd: int) -> None:
    """Write out everything of the filesystem that `fd` is on (syncfs(2); Python's os
    has no wrapper): one call makes many new files durable, where an fsync each would
    pay a journal or log commit per file."""
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs: {os.strerror(err)}")


# -- file handles: reach an inode again later without a path (hard links) ---------------

_AT_EMPTY_PATH = 0x1000
_MAX_HANDLE_SZ = 128


def file_handle(fd: int) -> tuple[int, bytes] | None:
    """(handle_type, handle bytes) of the open file, or None where unsupported."""
    buf = ctypes.create_string_buffer(8 + _MAX_HANDLE_SZ)
    ctypes.c_uint.from_buffer(buf, 0).value = _MAX_HANDLE_SZ
    mount_id = ctypes.c_int()
    rc = _libc.name_to_handle_at(fd, b"", buf, ctypes.byref(mount_id), _AT_EMPTY_PATH)
    if rc != 0:
        return None
    size = ctypes.c_uint.from_buffer(buf, 0).value
    htype = ctypes.c_int.from_buffer(buf, 4).value
    return htype, bytes(buf.raw[8:8 + size])


def open_by_handle(mount_fd: int, htype: int, handle: bytes, flags: int) -> int | None:
    """An fd of the inode, or None when it is gone (ESTALE) or can't be opened."""
    buf = ctypes.create_string_buffer(8 + len(handle))
    ctypes.c_uint.from_buffer(buf, 0).value = len(handle)
    ctypes.c_int.from_buffer(buf, 4).value = htype
    ctypes.memmove(ctypes.addressof(buf) + 8, handle, len(handle))
    fd = _libc.open_by_handle_at(mount_fd, buf, flags | os.O_CLOEXEC)
    if fd < 0:
        return None
    return int(fd)


def apply_metadata_fd(fd: int, src: Meta, xattrs: dict[str, bytes]) -> None:
    """apply_metadata for an open regular file or directory."""
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (src.st_uid, src.st_gid):
        os.fchown(fd, src.st_uid, src.st_gid)
    _write_xattrs(fd, xattrs)
    os.fchmod(fd, stat.S_IMODE(src.st_mode))
    os.utime(fd, ns=(src.st_atime_ns, src.st_mtime_ns))
