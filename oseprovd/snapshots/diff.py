"""Streamed comparison of two trees (old -> new): one DiffEntry per changed path, in
sorted path order, holding at most one directory listing per level in memory."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from oseprovd.snapshots.models import ChangeKind, DiffEntry
from oseprovd.snapshots.treesync import check_depth
from oseprovd.system import fileops

_CHUNK = 1 << 20


def _join(rel: str, name: str) -> str:
    return name if not rel else f"{rel}/{name}"


def _same_bytes(a_dir: int, b_dir: int, name: str) -> bool:
    a = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=a_dir)
    try:
        b = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=b_dir)
        try:
            while True:
                x = os.read(a, _CHUNK)
                y = os.read(b, _CHUNK)
                if x != y:
                    return False
                if not x:
                    return True
        finally:
            os.close(b)
    finally:
        os.close(a)


def _content_changed(a_dir: int, b_dir: int, name: str, a: os.stat_result,
                     b: os.stat_result) -> bool:
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return True
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(name, dir_fd=a_dir) != os.readlink(name, dir_fd=b_dir)
    if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        return a.st_rdev != b.st_rdev
    if not stat.S_ISREG(a.st_mode):
        return False
    if a.st_size != b.st_size:
        return True
    return not _same_bytes(a_dir, b_dir, name)


def _metadata_changed(a_dir: int, b_dir: int, name: str, a: os.stat_result,
                      b: os.stat_result) -> bool:
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return True
    if not stat.S_ISDIR(a.st_mode) and a.st_mtime_ns != b.st_mtime_ns:
        return True
    return fileops.xattrs_at(a_dir, name, a) != fileops.xattrs_at(b_dir, name, b)


def _all_under(dir_fd: int, name: str, rel: str, change: ChangeKind,
               dev: int) -> Iterator[DiffEntry]:
    check_depth(rel)
    yield DiffEntry(path=rel, change=change)
    st = fileops.lstat_at(dir_fd, name)
    if st is None or not stat.S_ISDIR(st.st_mode) or st.st_dev != dev:
        return
    sub = fileops.open_dir_at(dir_fd, name)
    try:
        for child in sorted(os.listdir(sub)):
            yield from _all_under(sub, child, _join(rel, child), change, dev)
    finally:
        os.close(sub)


def diff_dirs(a_dir: int, b_dir: int, rel: str = "", same_inodes: bool = False,
              exclude: frozenset[str] = frozenset()) -> Iterator[DiffEntry]:
    """Compare the entries of two open directories, leaving out `exclude` paths."""
    a_dev = os.fstat(a_dir).st_dev
    b_dev = os.fstat(b_dir).st_dev
    for name in sorted(set(os.listdir(a_dir)) | set(os.listdir(b_dir))):
        child = _join(rel, name)
        if child not in exclude:
            yield from diff_entry(a_dir, b_dir, name, child, same_inodes, a_dev, b_dev,
                                  exclude)


def _diff_subdir(a_dir: int, b_dir: int, name: str, rel: str, same_inodes: bool,
                 a: os.stat_result, b: os.stat_result, foreign: bool,
                 exclude: frozenset[str]) -> Iterator[DiffEntry]:
    if _metadata_changed(a_dir, b_dir, name, a, b):
        yield DiffEntry(path=rel, change="metadata")
    if foreign:
        return  # a nested subvolume or mount: not part of this tree
    sa = fileops.open_dir_at(a_dir, name)
    try:
        sb = fileops.open_dir_at(b_dir, name)
        try:
            yield from diff_dirs(sa, sb, rel, same_inodes, exclude)
        finally:
            os.close(sb)
    finally:
        os.close(sa)


def diff_entry(a_dir: int, b_dir: int, name: str, rel: str, same_inodes: bool,
               a_dev: int, b_dev: int,
               exclude: frozenset[str] = frozenset()) -> Iterator[DiffEntry]:
    check_depth(rel)
    a = fileops.lstat_at(a_dir, name)
    b = fileops.lstat_at(b_dir, name)
    if a is None and b is None:
        return
    if a is None:
        yield from _all_under(b_dir, name, rel, "created", b_dev)
        return
    if b is None:
        yield from _all_under(a_dir, name, rel, "deleted", a_dev)
        return
    a_is_dir, b_is_dir = stat.S_ISDIR(a.st_mode), stat.S_ISDIR(b.st_mode)
    if a_is_dir != b_is_dir:
        yield from _all_under(a_dir, name, rel, "deleted", a_dev)
        yield from _all_under(b_dir, name, rel, "created", b_dev)
        return
    if a_is_dir:
        yield from _diff_subdir(a_dir, b_dir, name, rel, same_inodes, a, b,
                                a.st_dev != a_dev or b.st_dev != b_dev, exclude)
        return
    if (same_inodes and a.st_ino == b.st_ino and a.st_ctime_ns == b.st_ctime_ns
            and a.st_mtime_ns == b.st_mtime_ns and a.st_size == b.st_size):
        return  # an untouched file in a btrfs snapshot keeps inode and ctime
    if _content_changed(a_dir, b_dir, name, a, b):
        yield DiffEntry(path=rel, change="content")
    elif _metadata_changed(a_dir, b_dir, name, a, b):
        yield DiffEntry(path=rel, change="metadata")
