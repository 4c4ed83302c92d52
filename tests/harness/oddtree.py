"""A tree with everything that makes "restore exactly" hard, and a change to all of it.

Names with spaces, a newline and non-UTF-8 bytes; hard links (also across
directories); symlinks (relative, absolute, dangling, to a directory); a sparse file;
user.* xattrs; access and default POSIX ACLs (setfacl); other owners; setuid; a fifo;
an empty directory; old mtimes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.harness.components import require

ODD = b"bad\xffname \xe9"
NL = "new\nline"


def _w(path: Path | bytes, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def setfacl(*args: str | Path) -> None:
    subprocess.run([require("setfacl", "POSIX ACLs"), *map(str, args)], check=True)


def build(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _w(root / "plain.txt", b"hello\n" * 100)
    _w(root / "with space.txt", b"spaces\n")
    _w(root / NL, b"a newline in the name\n")
    _w(os.fsencode(root) + b"/" + ODD, b"not utf-8\n")
    (root / "sub dir" / "nested").mkdir(parents=True)
    _w(root / "sub dir" / "nested" / "deep.bin", os.urandom(70000))
    _w(root / "hl_a", b"hard linked\n")
    os.link(root / "hl_a", root / "sub dir" / "hl_b")
    os.link(root / "hl_a", root / "hl_c")
    os.symlink("plain.txt", root / "link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.symlink("sub dir", root / "dirlink")
    with open(root / "sparse.img", "wb") as f:
        f.truncate(8 << 20)
        f.seek(0)
        f.write(b"head" * 4096)
        f.seek(5 << 20)
        f.write(b"middle" * 4096)
    os.setxattr(root / "plain.txt", "user.origin", b"test\x00bytes")
    os.setxattr(root / "sub dir", "user.dir", b"on a dir")
    setfacl("-m", "u:nobody:rw,g:nogroup:r", root / "plain.txt")
    setfacl("-d", "-m", "u:nobody:rx", root / "sub dir")
    setfacl("-m", "u:nobody:rwx", root / "sub dir")
    _w(root / "owned", b"someone else's\n")
    os.chown(root / "owned", 1234, 5678)
    os.chmod(root / "owned", 0o640)
    _w(root / "setuid", b"#!/bin/sh\n")
    os.chmod(root / "setuid", 0o4755)
    os.mkfifo(root / "fifo", 0o620)
    (root / "empty").mkdir(mode=0o711)
    os.utime(root / "with space.txt", ns=(1_000_000_000_123, 1_500_000_000_456_789_000))
    os.utime(root / "sub dir" / "nested", ns=(2_000_000_000_000, 1_400_000_000_000_000_001))


def change(root: Path) -> None:
    """Touch every kind of thing: content, deletion, creation, metadata, links."""
    _w(root / "plain.txt", b"changed\n")
    (root / "with space.txt").unlink()
    os.unlink(os.fsencode(root) + b"/" + ODD)
    _w(root / "created by op", b"new\n")
    (root / "created dir" / "x").mkdir(parents=True)
    _w(root / "created dir" / "x" / "f", b"f")
    os.chmod(root / NL, 0o600)
    os.setxattr(root / "sub dir", "user.dir", b"changed")
    os.setxattr(root / "owned", "user.added", b"1")
    setfacl("-b", root / "plain.txt")
    setfacl("-k", root / "sub dir")
    (root / "sub dir" / "hl_b").unlink()
    _w(root / "sub dir" / "hl_b", b"no longer a link\n")
    os.unlink(root / "link")
    os.symlink("with space.txt", root / "link")
    with open(root / "sparse.img", "r+b") as f:
        f.seek(2 << 20)
        f.write(b"fill" * 100000)
    os.chown(root / "owned", 4321, 8765)
    os.chmod(root / "setuid", 0o755)
    (root / "fifo").unlink()
    os.rename(root / "sub dir" / "nested", root / "sub dir" / "moved")
    (root / "empty").rmdir()
    _w(root / "empty", b"now a file\n")
