"""Read-only bind mounts for browsing, made with mount(2) on file descriptors.

The source and the target are directories the caller opened and checked itself; they
reach mount(2) as /proc/self/fd/N, so no path is resolved again between the check and
the mount. A bind mount takes its flags only from a second, remounting call
(MS_REMOUNT|MS_BIND): until then the new mount is writable and may run setuid files,
which is why it is made under a 0700 root-owned directory nobody else can enter.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

BROWSE_OPTIONS = frozenset({"ro", "nosuid", "nodev", "noexec"})


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def bind_readonly(source_fd: int, target_fd: int) -> None:
    """Bind the directory `source_fd` over `target_fd`, then make that mount
    ro,nosuid,nodev,noexec. If the second step fails, the mount is taken away again."""
    src = f"/proc/self/fd/{source_fd}".encode()
    dst = f"/proc/self/fd/{target_fd}".encode()
    _check(_libc.mount(src, dst, None, MS_BIND, None), "bind mount")
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    # The target fd still names the directory under the mount: remount by path of the
    # mount itself, which /proc/self/fd/N no longer is. Resolve it once, from the fd's
    # own link (a path under the daemon's private, 0700 directory).
    target = os.readlink(dst)
    rc = _libc.mount(None, target, None, flags, None)
    if rc != 0:
        err = ctypes.get_errno()
        _libc.umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW)
        raise OSError(err, f"remount read-only: {os.strerror(err)}")


def unmount(path: Path, lazy: bool = False) -> bool:
    """Unmount `path` (not following a symlink there). False if nothing was mounted
    there; a busy mount raises EBUSY unless `lazy` (then it is detached now and goes
    away when its last user leaves)."""
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if lazy else 0)
    if _libc.umount2(os.fsencode(path), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err == errno.EINVAL:  # not a mount point
        return False
    raise OSError(err, f"umount {path}: {os.strerror(err)}")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(directory: Path, mountinfo: str) -> dict[Path, frozenset[str]]:
    """The mount points directly inside `directory`, each with its per-mount options
    (ro, nosuid, ...), as /proc/self/mountinfo reports them."""
    found: dict[Path, frozenset[str]] = {}
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 6:
            continue
        point = Path(_unescape(fields[4]))
        if point.parent == directory:
            found[point] = frozenset(fields[5].split(","))
    return found


def read_mountinfo(proc: Path = Path("/proc")) -> str:
    return (proc / "self/mountinfo").read_text(errors="surrogateescape")
