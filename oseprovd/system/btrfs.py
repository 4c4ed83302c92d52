"""btrfs subvolume operations through libbtrfsutil's Python bindings.

Why the bindings and not the `btrfs` CLI: a snapshot is one ioctl (about 2 ms), while a
`btrfs` process costs more than that just to start, and the bindings accept file
descriptors, so a path checked once cannot be swapped under us before we act.

Which bindings (see docs/snapshots.md): Debian 12 ships libbtrfsutil 6.2. The PyPI
`btrfsutil` sdist compiles against the system's library; 6.10 to 6.13 link against 6.2,
6.14 and later need `btrfs_util_subvolume_is_valid` (new in 6.14) and fail at import.
So a venv pins `btrfsutil>=6.10,<6.14`; a packaged daemon running on /usr/bin/python3
uses Debian's `python3-btrfsutil` (built from the same source as the library). When the
venv has neither, the Debian module file is loaded directly: it is built for the same
interpreter (Debian's 3.11) that the venv was made from.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import importlib.machinery
import importlib.util
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from oseprovd.errors import Unavailable

_DEBIAN_DIST = Path("/usr/lib/python3/dist-packages")

PathOrFd = str | bytes | os.PathLike[str] | int


def _load() -> ModuleType | None:
    try:
        import btrfsutil
    except ImportError:
        pass
    else:
        return btrfsutil  # type: ignore[no-any-return]
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    candidates = sorted(_DEBIAN_DIST.glob(f"btrfsutil.{tag}-*.so"))
    if not candidates:
        return None
    spec = importlib.util.spec_from_file_location(
        "btrfsutil", candidates[0],
        loader=importlib.machinery.ExtensionFileLoader("btrfsutil", str(candidates[0])),
    )
    if spec is None or spec.loader is None:
        return None
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError:
        return None
    sys.modules["btrfsutil"] = module
    return module


_btrfsutil: ModuleType | None = _load()


def available() -> bool:
    return _btrfsutil is not None


def _lib() -> Any:
    if _btrfsutil is None:
        raise Unavailable(
            "the btrfsutil Python bindings are missing: install python3-btrfsutil "
            "(or `pip install 'btrfsutil>=6.10,<6.14'` in a venv)"
        )
    return _btrfsutil


class BtrfsError(OSError):
    """A libbtrfsutil call failed; errno is kept so callers can test for ENOENT etc."""


def _call(fn: str, *args: Any, **kwargs: Any) -> Any:
    lib = _lib()
    try:
        return getattr(lib, fn)(*args, **kwargs)
    except lib.BtrfsUtilError as exc:
        raise BtrfsError(exc.errno, f"{fn}: {exc}") from None


@dataclass(frozen=True)
class SubvolumeInfo:
    id: int
    parent_id: int
    uuid: str
    parent_uuid: str
    read_only: bool
    generation: int
    otime: float
    otransid: int = 0  # the transaction that made it (a snapshot: what it holds)


_READ_ONLY_FLAG = 1  # BTRFS_SUBVOL_RDONLY in the root item's flags


def subvolume_info(path: PathOrFd) -> SubvolumeInfo:
    info = _call("subvolume_info", path)
    return SubvolumeInfo(
        id=info.id,
        parent_id=info.parent_id,
        uuid=info.uuid.hex(),
        parent_uuid=info.parent_uuid.hex(),
        read_only=bool(info.flags & _READ_ONLY_FLAG),
        generation=info.generation,
        otime=info.otime,
        otransid=info.otransid,
    )


def is_subvolume(path: PathOrFd) -> bool:
    try:
        return bool(_call("is_subvolume", path))
    except BtrfsError:
        return False


def subvolume_id(path: PathOrFd) -> int:
    return int(_call("subvolume_id", path))


def subvolume_path(path: PathOrFd, subvol_id: int = 0) -> str:
    """Path of a subvolume relative to the filesystem's top level (id 5)."""
    return str(_call("subvolume_path", path, subvol_id))


def fd_path(dir_fd: int, name: str | None = None) -> str:
    """A path that reaches `name` through an already opened (and checked) directory."""
    base = f"/proc/self/fd/{dir_fd}"
    return base if name is None else f"{base}/{name}"


def create_snapshot(source: PathOrFd, dest_dir_fd: int, name: str, read_only: bool) -> None:
    """Snapshot `source` as `name` inside the directory open as `dest_dir_fd`."""
    _call("create_snapshot", source, fd_path(dest_dir_fd, name), read_only=read_only)


def delete_subvolume(dir_fd: int, name: str) -> None:
    _call("delete_subvolume", fd_path(dir_fd, name))


def set_read_only(path: PathOrFd, read_only: bool) -> None:
    _call("set_subvolume_read_only", path, read_only)


def get_read_only(path: PathOrFd) -> bool:
    return bool(_call("get_subvolume_read_only", path))


def get_default_subvolume(path: PathOrFd) -> int:
    return int(_call("get_default_subvolume", path))


def set_default_subvolume(path: PathOrFd, subvol_id: int) -> None:
    _call("set_default_subvolume", path, subvol_id)


def sync(path: PathOrFd) -> None:
    _call("sync", path)


def deleted_subvolumes(path: PathOrFd) -> list[int]:
    """Subvolumes deleted but not yet cleaned up (their space is not free yet)."""
    return [int(i) for i in _call("deleted_subvolumes", path)]


# BTRFS_IOC_INO_PATHS = _IOWR(0x94, 35, struct btrfs_ioctl_ino_path_args (56 bytes)):
# every path of an inode inside the subvolume of `fd`. libbtrfsutil has no binding.
_IOC_INO_PATHS = 0xC0389423


def ino_paths(fd: int, ino: int, size: int = 65536) -> list[bytes]:
    """The names (relative to the subvolume root) of inode `ino` in fd's subvolume."""
    buf = ctypes.create_string_buffer(size)
    args = bytearray(struct.pack("QQ4QQ", ino, size, 0, 0, 0, 0, ctypes.addressof(buf)))
    fcntl.ioctl(fd, _IOC_INO_PATHS, args)
    _left, missing, count, _missed = struct.unpack_from("IIII", buf.raw, 0)
    if missing:  # more names than fit: an incomplete answer must not pass as the whole
        raise OSError(errno.E2BIG, f"inode {ino} has more names than {size} bytes hold")
    offsets = struct.unpack_from(f"{count}Q", buf.raw, 16)
    return [buf.raw[16 + off:].split(b"\0", 1)[0] for off in offsets]


# BTRFS_IOC_TREE_SEARCH: _IOWR(0x94, 17, struct btrfs_ioctl_search_args), 4096 bytes:
# a 104-byte key (tree, objectid, offset and transid ranges, type range, item count)
# followed by the items found, each a 32-byte header (transid, objectid, offset, type,
# len) and its data. libbtrfsutil has no binding for it.
_IOC_TREE_SEARCH = 0xD0009411
_SEARCH_KEY = struct.Struct("=7Q4I4Q")
_SEARCH_HEADER = struct.Struct("=3Q2I")
_INODE_ITEM_KEY = 1
_FIRST_FREE_OBJECTID = 256
_LAST_FREE_OBJECTID = 2**64 - 256  # (u64)-256
_U64_MAX = 2**64 - 1


def changed_inodes(fd: int, tree_id: int, since: int) -> dict[int, int]:
    """{inode number: mode} of the inodes of subvolume `tree_id` (fd anywhere on that
    filesystem, root only) whose inode item was written in a transaction after `since`:
    what changed in the subvolume since a snapshot taken in transaction `since`
    (content, metadata, and for a directory its entries)."""
    found: dict[int, int] = {}
    min_objectid = _FIRST_FREE_OBJECTID
    while True:
        buf = bytearray(4096)
        _SEARCH_KEY.pack_into(buf, 0, tree_id, min_objectid, _LAST_FREE_OBJECTID, 0,
                              _U64_MAX, since + 1, _U64_MAX, _INODE_ITEM_KEY,
                              _INODE_ITEM_KEY, 4096, 0, 0, 0, 0, 0)
        fcntl.ioctl(fd, _IOC_TREE_SEARCH, buf)
        count = _SEARCH_KEY.unpack_from(buf, 0)[9]
        if count == 0:
            return found
        pos = _SEARCH_KEY.size
        objectid = min_objectid
        for _ in range(count):
            _t, objectid, _off, kind, length = _SEARCH_HEADER.unpack_from(buf, pos)
            pos += _SEARCH_HEADER.size
            if kind == _INODE_ITEM_KEY and length >= 56:
                # btrfs_inode_item: generation, transid, size, nbytes, block_group (u64),
                # nlink, uid, gid, mode (u32): transid at 8, mode at 52
                transid = struct.unpack_from("=Q", buf, pos + 8)[0]
                if transid > since:
                    found[objectid] = struct.unpack_from("=I", buf, pos + 52)[0]
            pos += length
        if objectid >= _LAST_FREE_OBJECTID:
            return found
        min_objectid = objectid + 1
