"""Ground truth for "identical": an independent description of a tree, taken with
os.lstat, hashlib, os.listxattr and getfacl, sharing no code with the snapshot engine.

A manifest maps each path (bytes, relative) to what it is: type, mode, uid, gid, size,
mtime_ns, atime_ns, content sha256 and data/hole map for files, link target for
symlinks, rdev for devices, all xattrs; plus which paths are hard links of each other
and `getfacl -R` of the whole tree.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
from pathlib import Path
from typing import Any


def _xattrs(path: bytes) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def _data_map(fd: int, size: int) -> list[tuple[int, int]]:
    """The data segments (SEEK_DATA/SEEK_HOLE), i.e. where the holes are."""
    out = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        out.append((start, end))
        pos = end
    return out


def _describe(path: bytes, st: os.stat_result) -> dict[str, Any]:
    d: dict[str, Any] = {
        "type": stat.S_IFMT(st.st_mode), "mode": st.st_mode, "uid": st.st_uid,
        "gid": st.st_gid, "mtime_ns": st.st_mtime_ns, "xattrs": _xattrs(path),
    }
    if stat.S_ISREG(st.st_mode):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            h = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
            d["sha256"] = h.hexdigest()
            d["size"] = st.st_size
            d["data_map"] = _data_map(fd, st.st_size)
        finally:
            os.close(fd)
        d["atime_ns"] = st.st_atime_ns
    elif stat.S_ISLNK(st.st_mode):
        d["target"] = os.readlink(path)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        d["rdev"] = st.st_rdev
    return d


def manifest(root: Path, exclude: tuple[bytes, ...] = ()) -> dict[str, Any]:
    rootb = os.fsencode(root)
    entries: dict[bytes, dict[str, Any]] = {}
    inodes: dict[int, list[bytes]] = {}
    root_dev = os.lstat(rootb).st_dev

    def walk(rel: bytes) -> None:
        full = rootb + (b"/" + rel if rel else b"")
        st = os.lstat(full)
        entries[rel or b"."] = _describe(full, st)
        if stat.S_ISREG(st.st_mode):
            inodes.setdefault(st.st_ino, []).append(rel)
        if stat.S_ISDIR(st.st_mode) and st.st_dev == root_dev:
            for name in sorted(os.listdir(full)):
                child = rel + b"/" + name if rel else name
                if child not in exclude:
                    walk(child)

    walk(b"")
    links = sorted(tuple(sorted(v)) for v in inodes.values() if len(v) > 1)
    facl = subprocess.run(["getfacl", "-R", "-P", "-n", "--absolute-names", "--", root],
                          check=True, capture_output=True).stdout
    facl_blocks = sorted(b.replace(b"# file: " + rootb, b"# file: ROOT", 1)
                         for b in facl.split(b"\n\n") if b.strip()
                         and not any(b.startswith(b"# file: " + rootb + b"/" + e)
                                     for e in exclude))
    return {"entries": entries, "links": links, "getfacl": facl_blocks}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Human-readable differences between two manifests (empty when identical)."""
    out = []
    ea, eb = a["entries"], b["entries"]
    for path in sorted(set(ea) | set(eb)):
        if path not in ea:
            out.append(f"only after: {path!r}")
        elif path not in eb:
            out.append(f"only before: {path!r}")
        elif ea[path] != eb[path]:
            keys = sorted(k for k in set(ea[path]) | set(eb[path])
                          if ea[path].get(k) != eb[path].get(k))
            what = ", ".join(f"{k} {ea[path].get(k)!r} -> {eb[path].get(k)!r}" for k in keys)
            out.append(f"{path!r}: {what}")
    if a["links"] != b["links"]:
        out.append(f"hard links {a['links']!r} -> {b['links']!r}")
    if a["getfacl"] != b["getfacl"]:
        out.append("getfacl output differs")
    return out


def changed_paths(a: dict[str, Any], b: dict[str, Any]) -> set[bytes]:
    ea, eb = a["entries"], b["entries"]
    return {p for p in set(ea) | set(eb) if ea.get(p) != eb.get(p)}
