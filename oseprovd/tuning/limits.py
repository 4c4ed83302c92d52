"""Resource limits through one file in /etc/security/limits.d/, written atomically.

The knob's value is the file's whole text; its original state (absent, or bytes, mode and
owner) is captured exactly so a revert removes the file or puts the old bytes back.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from typing import Any

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.knob import Knob
from oseprovd.tuning.roots import exists

LIMITS_DIR = "etc/security/limits.d"
LIMITS_NAME = "90-ose-tuning.conf"
LIMITS_FILE = f"{LIMITS_DIR}/{LIMITS_NAME}"
FILE_LIMIT = 1 << 20
# item -> (min, max); "unlimited" allowed where the kernel accepts it safely.
ITEMS = {
    # Above fs.nr_open (1048576 by default) pam_limits fails and logins break.
    "nofile": (1024, 1048576, False),
    "nproc": (1024, 4194304, True),
    "memlock": (64, 2**40, True),
    "stack": (1024, 2**22, True),
}
ITEM_RE = re.compile(r"^[a-z]{1,16}$")


def check_limit(item: str, value: str) -> str:
    if not ITEM_RE.fullmatch(item) or item not in ITEMS:
        raise ValueError(f"unknown limit {item!r} (known: {', '.join(ITEMS)})")
    lo, hi, unlimited_ok = ITEMS[item]
    if value == "unlimited":
        if not unlimited_ok:
            raise ValueError(f"{item} cannot be unlimited")
        return value
    if not value.isdigit() or not lo <= int(value) <= hi:
        raise ValueError(f"{item} must be an integer {lo}..{hi}, got {value!r}")
    return str(int(value))


def render(profile: str, limits: dict[str, str]) -> str:
    lines = [f"# Written by oseprovd tuning for profile {profile}; reverted with it.", ""]
    for item in sorted(limits):
        lines.append(f"*\tsoft\t{item}\t{limits[item]}")
        lines.append(f"*\thard\t{item}\t{limits[item]}")
    return "\n".join(lines) + "\n"


class LimitsKnob(Knob):
    family = "limits"

    def __init__(self, target: TargetRoot) -> None:
        super().__init__("limits:file")
        self.target = target

    def _applicable(self) -> bool:
        st = self.target.lstat(LIMITS_DIR) if exists(self.target, LIMITS_DIR) else None
        return st is not None and stat.S_ISDIR(st.st_mode)

    def read(self) -> str | None:
        if not self._applicable():
            return None
        try:
            return self.target.read_bytes(LIMITS_FILE, limit=FILE_LIMIT).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def same(self, current: str | None, target: str) -> bool:
        return current == target

    def write(self, value: str) -> None:
        self.target.atomic_write(LIMITS_FILE, value.encode(), mode=0o644, uid=0, gid=0)

    def capture(self) -> dict[str, Any]:
        if not self._applicable():
            return {"value": None}
        st = self.target.lstat(LIMITS_FILE)
        if st is None:
            return {"value": "", "exists": False}
        data = self.target.read_bytes(LIMITS_FILE, limit=FILE_LIMIT)
        return {
            "value": data.decode("utf-8", "replace"),
            "exists": True,
            "bytes": base64.b64encode(data).decode(),
            "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid,
            "gid": st.st_gid,
            "atime_ns": st.st_atime_ns,
            "mtime_ns": st.st_mtime_ns,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        if saved.get("value") is None:
            return
        if not saved.get("exists"):
            self.target.unlink(LIMITS_FILE, missing_ok=True)
            return
        self.target.atomic_write(
            LIMITS_FILE,
            base64.b64decode(saved["bytes"]),
            mode=int(saved["mode"]),
            uid=int(saved["uid"]),
            gid=int(saved["gid"]),
        )
        # Times too: a restored file should look untouched to backup and config tools.
        fd = self.target.open_dir(LIMITS_DIR)
        try:
            os.utime(LIMITS_NAME, ns=(int(saved["atime_ns"]), int(saved["mtime_ns"])),
                     dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def is_restored(self, saved: dict[str, Any]) -> bool:
        # Reading the file may move its access time; everything else must match.
        now = self.capture()
        now.pop("atime_ns", None)
        return now == {k: v for k, v in saved.items() if k != "atime_ns"}

    def display(self, saved: dict[str, Any]) -> str | None:
        if saved.get("value") is None:
            return None
        return str(saved["value"]) if saved.get("exists") else "(no file)"
