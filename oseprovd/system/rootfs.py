"""Safe file operations inside a target root.

Every path is resolved component by component from an fd of the root with O_NOFOLLOW,
so neither a symlink nor `..` can lead outside it, whatever a path or the tree says.
Writes are atomic: a temp file in the same directory, fsync, rename, fsync of the dir.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from oseprovd.errors import InvalidArguments, OseError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_PATH_BYTES = 4096


class UnsafePath(OseError):
    """A path leads through a symlink or something that is not a directory."""

    name = "UnsafePath"


def split_rel(rel: str) -> tuple[str, ...]:
    """The components of a path relative to a root; `..`, NUL and overlong paths refused.

    A leading "/" is accepted and means the root itself, as it does for `--root`.
    """
    if "\0" in rel:
        raise InvalidArguments("path contains a NUL byte")
    if len(rel.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise InvalidArguments("path is longer than 4096 bytes")
    parts = tuple(p for p in rel.split("/") if p not in ("", "."))
    if ".." in parts:
        raise InvalidArguments(f"path {rel!r} contains '..'; give a path inside the root")
    return parts


class TargetRoot:
    """A directory tree treated as `/` (the machine itself in production)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()
        self._local = threading.local()  # .dirs: the cache of cached_dirs(), per thread

    @contextmanager
    def cached_dirs(self) -> Iterator[None]:
        """Within this block (in this thread only), each directory is resolved once and
        its fd kept: many small reads and writes in a few deep directories (/proc/sys,
        /sys/devices/...) then cost one open each, not one per path component. The
        directories are the ones the first walk found, safely (same rules); a directory
        replaced meanwhile is not seen, so use this for short operations only."""
        if getattr(self._local, "dirs", None) is not None:
            yield  # nested: the outer block owns the cache
            return
        dirs: dict[tuple[str, ...], int] = {}
        self._local.dirs = dirs
        try:
            yield
        finally:
            self._local.dirs = None
            for fd in dirs.values():
                os.close(fd)

    def resolve_rel(self, rel: str) -> str:
        return "/".join(split_rel(rel))

    def host_path(self, rel: str) -> Path:
        """The path on the host, for display and for tools that take paths (not for opening)."""
        return self.path.joinpath(*split_rel(rel))

    def _open_root(self) -> int:
        return os.open(self.path, _DIR_FLAGS)

    def _walk_dirs(self, parts: tuple[str, ...], create: bool, mode: int) -> int:
        dirs: dict[tuple[str, ...], int] | None = getattr(self._local, "dirs", None)
        if dirs is not None:
            cached = dirs.get(parts)
            if cached is None:
                cached = self._walk_dirs_uncached(parts, create, mode)
                dirs[parts] = cached
            return os.dup(cached)  # the caller closes its fd; the cache keeps its own
        return self._walk_dirs_uncached(parts, create, mode)

    def _walk_dirs_uncached(self, parts: tuple[str, ...], create: bool, mode: int) -> int:
        fd = self._open_root()
        try:
            for name in parts:
                try:
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with suppress(FileExistsError):
                        os.mkdir(name, mode, dir_fd=fd)
                    nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafePath(
                            f"{name!r} under {self.path} is a symlink or not a directory"
                        ) from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_dir(self, rel: str, create: bool = False, mode: int = 0o755) -> int:
        """An O_PATH-free directory fd for `rel`; the caller closes it."""
        return self._walk_dirs(split_rel(rel), create, mode)

    @contextmanager
    def _parent(self, rel: str, create: bool = False) -> Iterator[tuple[int, str]]:
        parts = split_rel(rel)
        if not parts:
            raise InvalidArguments("the root itself is not a file")
        dfd = self._walk_dirs(parts[:-1], create, 0o755)
        try:
            yield dfd, parts[-1]
        finally:
            os.close(dfd)

    def _open_leaf(self, rel: str, flags: int) -> int:
        with self._parent(rel) as (dfd, name):
            try:
                return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UnsafePath(f"{rel!r} under {self.path} is a symlink") from None
                raise

    def lstat(self, rel: str) -> os.stat_result | None:
        try:
            with self._parent(rel) as (dfd, name):
                return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, rel: str) -> bool:
        return self.lstat(rel) is not None

    def read_bytes(self, rel: str, limit: int = 1 << 20) -> bytes:
        """The file's content, at most `limit` bytes (more is an error, not a truncation)."""
        fd = self._open_leaf(rel, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode) and not rel.startswith(("proc/", "sys/")):
                raise UnsafePath(f"{rel!r} is not a regular file")
            chunks: list[bytes] = []
            size = 0
            while chunk := os.read(fd, 65536):
                size += len(chunk)
                if size > limit:
                    raise InvalidArguments(f"{rel!r} is larger than {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def read_text(self, rel: str, limit: int = 1 << 20) -> str:
        return self.read_bytes(rel, limit).decode("utf-8", "surrogateescape")

    def write_existing(self, rel: str, data: bytes) -> None:
        """One write() to an existing file: the way to set a sysfs or procfs knob.

        O_TRUNC, as `echo > knob` and sysctl(8) do: the kernel ignores it, and a regular
        file (a sandbox tree, a test) gets the value instead of having it written over
        the old one's first bytes."""
        fd = self._open_leaf(rel, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def atomic_write(
        self,
        rel: str,
        data: bytes,
        mode: int = 0o644,
        uid: int | None = None,
        gid: int | None = None,
        create_parents: bool = False,
    ) -> None:
        # One directory fd for the temp file and the rename: the directory cannot be
        # swapped in between.
        with self._parent(rel, create=create_parents) as (dfd, name):
            tmp = self._write_temp(dfd, name, data, mode, uid, gid)
            self._rename_temp(dfd, name, tmp)

    def prepare_write(
        self,
        rel: str,
        data: bytes,
        mode: int = 0o644,
        uid: int | None = None,
        gid: int | None = None,
    ) -> str:
        """The first half of atomic_write, for a caller that wants to write the data
        early and make it visible later: the new content in a temp file next to `rel`
        (".NAME.ose-<12 hex>"), fsynced; nothing visible changed yet. Returns the temp
        file's name for commit_write() or discard_write(). The halves resolve the
        directory separately: only for directories that only root can change."""
        with self._parent(rel) as (dfd, name):
            return self._write_temp(dfd, name, data, mode, uid, gid)

    def commit_write(self, rel: str, tmp: str) -> None:
        """The second half: rename the prepared temp file over `rel`, fsync the dir."""
        with self._parent(rel) as (dfd, name):
            if not tmp.startswith(f".{name}.ose-") or "/" in tmp:
                raise InvalidArguments(f"{tmp!r} is not a temp file of {rel!r}")
            self._rename_temp(dfd, name, tmp)

    def discard_write(self, rel: str, tmp: str) -> None:
        """Remove a prepared temp file that will not be committed."""
        with self._parent(rel) as (dfd, name):
            if tmp.startswith(f".{name}.ose-") and "/" not in tmp:
                with suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dfd)

    @staticmethod
    def _write_temp(dfd: int, name: str, data: bytes, mode: int, uid: int | None,
                    gid: int | None) -> str:
        tmp = f".{name}.ose-{secrets.token_hex(6)}"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode, dir_fd=dfd,
        )
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, mode)  # the umask must not narrow what was asked for
                if uid is not None or gid is not None:
                    os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        return tmp

    @staticmethod
    def _rename_temp(dfd: int, name: str, tmp: str) -> None:
        try:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        os.fsync(dfd)

    def unlink(self, rel: str, missing_ok: bool = False) -> None:
        with self._parent(rel) as (dfd, name):
            try:
                os.unlink(name, dir_fd=dfd)
            except FileNotFoundError:
                if not missing_ok:
                    raise
            os.fsync(dfd)
