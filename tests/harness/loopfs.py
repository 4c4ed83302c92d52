"""Real filesystems on loop images: made, mounted and always taken down again.

    with loop_fs(tmp_path, "btrfs") as mnt: ...

The image is a sparse file, so a 300 MB filesystem costs only what is written. Mounted
with noatime, so that reading a tree (to hash it) doesn't change what is compared.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness.components import require, require_root

_MKFS = {
    "btrfs": ["-q", "-f"],
    "ext4": ["-q", "-F"],
    "xfs": ["-q", "-f"],
}


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@contextmanager
def loop_fs(tmp_path: Path, fstype: str, size_mb: int = 300,
            name: str | None = None) -> Iterator[Path]:
    require_root("loop devices and mounts")
    mkfs = require(f"mkfs.{fstype}", f"a real {fstype} filesystem")
    losetup = require("losetup", "loop devices")
    require("mount", "mounting loop images")
    base = name or fstype
    image = tmp_path / f"{base}.img"
    mnt = tmp_path / f"{base}-mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    _run([mkfs, *_MKFS[fstype], "--", str(image)])
    dev = _run([losetup, "-f", "--show", "--", str(image)]).strip()
    try:
        _run(["mount", "-o", "noatime", "--", dev, str(mnt)])
        try:
            yield mnt
        finally:
            clean = umount(mnt)
        # A busy filesystem at the end means something (the code under test) leaked an
        # fd or a cwd on it: that is a bug, not a teardown hiccup.
        assert clean, f"{mnt} was still busy at teardown (leaked fd?); lazily unmounted"
    finally:
        subprocess.run([losetup, "-d", dev], check=False, capture_output=True)


def umount(mnt: Path) -> bool:
    """Unmount; True if it was not busy (else it is unmounted lazily)."""
    for _ in range(30):
        r = subprocess.run(["umount", "--", str(mnt)], check=False, capture_output=True)
        if r.returncode == 0:
            return True
        time.sleep(0.1)
    subprocess.run(["umount", "-l", "--", str(mnt)], check=False, capture_output=True)
    return False
