"""Copy /etc/skel into a home after a reset emptied (part of) it.

Everything is opened from pinned directory fds with O_NOFOLLOW; an entry that exists
in the home is left as it is (the user kept it out of the plan). New entries belong
to the home's owner (its uid and gid), with skel's modes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from oseprovd.errors import OseError
from oseprovd.system.rootfs import TargetRoot

SKEL = "etc/skel"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 32


def skel_paths(root: TargetRoot, home: str) -> list[str]:
    """The paths in `home` that copying skel may create (for the rollback point)."""
    try:
        fd = root.open_dir(SKEL)
    except (OSError, OseError):
        return []
    try:
        return [f"{home}/{rel}" for rel in _walk(fd, "", 0)]
    finally:
        os.close(fd)


def _walk(fd: int, prefix: str, depth: int) -> Iterator[str]:
    if depth > MAX_DEPTH:
        return
    for name in sorted(os.listdir(fd)):
        rel = prefix + name
        yield rel
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, _DIR, dir_fd=fd)
            try:
                yield from _walk(sub, rel + "/", depth + 1)
            finally:
                os.close(sub)


def copy_skel(root: TargetRoot, home: str) -> int:
    """Create what skel has and the home lacks; returns how many entries were made."""
    try:
        src = root.open_dir(SKEL)
    except (OSError, OseError):
        return 0
    try:
        dst = root.open_dir(home)
    except BaseException:
        os.close(src)
        raise
    try:
        st = os.fstat(dst)
        return _copy(src, dst, st.st_uid, st.st_gid, 0)
    finally:
        os.close(dst)
        os.close(src)


def _copy(src: int, dst: int, uid: int, gid: int, depth: int) -> int:
    made = 0
    if depth > MAX_DEPTH:
        return 0
    for name in sorted(os.listdir(src)):
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        exists = True
        try:
            os.stat(name, dir_fd=dst, follow_symlinks=False)
        except FileNotFoundError:
            exists = False
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            if not exists:
                os.mkdir(name, 0o700, dir_fd=dst)
                made += 1
            try:
                d = os.open(name, _DIR, dir_fd=dst)
            except OSError:
                continue  # a symlink or a file the user has there: theirs
            try:
                if not exists:
                    os.fchown(d, uid, gid)
                    os.fchmod(d, mode)
                s = os.open(name, _DIR, dir_fd=src)
                try:
                    made += _copy(s, d, uid, gid, depth + 1)
                finally:
                    os.close(s)
            finally:
                os.close(d)
        elif exists:
            continue
        elif stat.S_ISREG(st.st_mode):
            made += _copy_file(src, dst, name, mode, uid, gid)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
            os.chown(name, uid, gid, dir_fd=dst, follow_symlinks=False)
            made += 1
    os.fsync(dst)
    return made


def _copy_file(src: int, dst: int, name: str, mode: int, uid: int, gid: int) -> int:
    i = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
    try:
        o = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                    | os.O_CLOEXEC, 0o600, dir_fd=dst)
        try:
            while chunk := os.read(i, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(o, view):]
            os.fchown(o, uid, gid)
            os.fchmod(o, mode)
            os.fsync(o)
        finally:
            os.close(o)
    finally:
        os.close(i)
    return 1
