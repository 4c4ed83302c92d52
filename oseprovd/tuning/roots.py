"""Where the tuning knobs live: procfs, sysfs and the target root, each a TargetRoot.

Production uses /proc, /sys and /; tests point all three at sandbox trees. Every read and
write of a knob goes through these, so no knob ever opens an absolute path itself.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from dataclasses import dataclass

from oseprovd.system.rootfs import TargetRoot, UnsafePath

# Attribute files in /proc and /sys are small; a larger read means something is wrong.
ATTR_LIMIT = 64 * 1024


@dataclass(frozen=True)
class TuningRoots:
    proc: TargetRoot  # holds sys/vm/swappiness, ... (production: /proc)
    sys: TargetRoot  # holds block/, devices/, kernel/mm/ (production: /sys)
    target: TargetRoot  # holds etc/security/limits.d, lib/modules (production: /)

    @classmethod
    def host(cls) -> TuningRoots:
        return cls(TargetRoot("/proc"), TargetRoot("/sys"), TargetRoot("/"))


def read_attr(root: TargetRoot, rel: str) -> str | None:
    """The text of a procfs/sysfs attribute, stripped; None when it does not exist."""
    try:
        data = root.read_bytes(rel, limit=ATTR_LIMIT)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        # Some attributes exist but cannot be read on this machine (EINVAL, ENODEV,
        # EOPNOTSUPP): for tuning that is the same as absent.
        if e.errno in (errno.EINVAL, errno.ENODEV, errno.EOPNOTSUPP, errno.EIO, errno.EPERM):
            return None
        raise
    return data.decode("utf-8", "replace").strip()


def write_attr(root: TargetRoot, rel: str, value: str) -> None:
    """One write() into an existing attribute; the kernel's refusal surfaces as OSError."""
    root.write_existing(rel, value.encode())


def exists(root: TargetRoot, rel: str) -> bool:
    try:
        return root.lstat(rel) is not None
    except (FileNotFoundError, NotADirectoryError):
        return False


def list_dir(root: TargetRoot, rel: str) -> list[str]:
    """Names in a directory of the root (sorted); empty when it does not exist."""
    try:
        fd = root.open_dir(rel, create=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        return sorted(os.listdir(fd))
    finally:
        os.close(fd)


def resolve_sys_link(root: TargetRoot, rel: str) -> str | None:
    """Follow one sysfs symlink such as block/sda -> ../devices/.../sda, inside the root.

    The root's own walk refuses symlinks (rightly), but /sys/block entries are symlinks by
    design. We read the link ourselves and accept it only if it stays inside the root.
    """
    rel = root.resolve_rel(rel)
    st = root.lstat(rel)
    if st is None:
        return None
    parent, _ = posixpath.split(rel)
    if not stat.S_ISLNK(st.st_mode):
        return rel
    fd = root.open_dir(parent, create=False)
    try:
        target = os.readlink(posixpath.basename(rel), dir_fd=fd)
    finally:
        os.close(fd)
    if target.startswith("/"):
        raise UnsafePath(f"sysfs link {rel!r} points outside the sysfs root")
    joined = posixpath.normpath(posixpath.join(parent, target))
    if joined == ".." or joined.startswith("../"):
        raise UnsafePath(f"sysfs link {rel!r} points outside the sysfs root")
    return joined
