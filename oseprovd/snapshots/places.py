"""The daemon's own directories (snapshot dirs, stores, mount points)."""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress
from pathlib import Path

from oseprovd.snapshots.errors import UnsafeSnapshotPath

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def open_private_dir(path: Path, create: bool) -> int:
    """The daemon's own directory: not a symlink, owned by us, no access for others."""
    if create:
        with suppress(FileExistsError):
            os.mkdir(path, 0o700)
    try:
        fd = os.open(path, _DIR | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeSnapshotPath(f"{path} is a symlink or not a directory") from None
        raise
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(fd)
        raise UnsafeSnapshotPath(
            f"{path} must be owned by uid {os.geteuid()} with mode 0700 "
            f"(it is uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})"
        )
    return fd


def statvfs_free(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail / st.f_blocks if st.f_blocks else 1.0
