"""Resource limits through one file in /etc/security/limits.d/, written atomically
(ManagedFileKnob: a revert removes the file or puts the old one back exactly)."""

from __future__ import annotations

import re

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.managedfile import ManagedFileKnob

LIMITS_DIR = "etc/security/limits.d"
LIMITS_NAME = "90-ose-tuning.conf"
LIMITS_FILE = f"{LIMITS_DIR}/{LIMITS_NAME}"
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


class LimitsKnob(ManagedFileKnob):
    family = "limits"

    def __init__(self, target: TargetRoot) -> None:
        super().__init__("limits:file", target, LIMITS_DIR, LIMITS_NAME)
