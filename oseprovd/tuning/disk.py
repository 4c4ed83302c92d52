"""Disk knobs, per block device: I/O scheduler and read-ahead, chosen by device type.

Device types: nvme, virtual (virtio/xen disks and stacked or memory devices such as dm,
md, loop, zram), rotational, ssd. /sys/block entries are symlinks into /sys/devices;
they are followed one at a time and only inside the sysfs root.
"""

from __future__ import annotations

import fnmatch
import re

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.knob import AbsentKnob, Knob
from oseprovd.tuning.roots import list_dir, read_attr, resolve_sys_link, write_attr
from oseprovd.tuning.selection import SelectionKnob

DEVICE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DISK_TYPES = ("nvme", "ssd", "rotational", "virtual")
SCHED_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Not tuned unless a caller names them: loop, ram disks, optical and floppy drives.
DEFAULT_EXCLUDE = ("loop*", "ram*", "zram*", "sr*", "fd*")


def device_dir(sys: TargetRoot, dev: str) -> str | None:
    if not DEVICE_RE.fullmatch(dev):
        raise ValueError(f"bad block device name {dev!r}")
    return resolve_sys_link(sys, f"block/{dev}")


def device_type(sys: TargetRoot, dev: str) -> str | None:
    path = device_dir(sys, dev)
    if path is None:
        return None
    if dev.startswith("nvme"):
        return "nvme"
    if "/virtual/" in f"/{path}/" or dev.startswith(("vd", "xvd")):
        return "virtual"
    if read_attr(sys, f"{path}/queue/rotational") == "1":
        return "rotational"
    return "ssd"


def devices(sys: TargetRoot, include: list[str] | None) -> list[tuple[str, str]]:
    """(device, type) for block devices with a request queue, filtered."""
    out = []
    for dev in list_dir(sys, "block"):
        if not DEVICE_RE.fullmatch(dev):
            continue
        if include is not None:
            if not any(fnmatch.fnmatchcase(dev, p) for p in include):
                continue
        elif any(fnmatch.fnmatchcase(dev, p) for p in DEFAULT_EXCLUDE):
            continue
        path = device_dir(sys, dev)
        if path is None or read_attr(sys, f"{path}/queue/scheduler") is None:
            continue
        kind = device_type(sys, dev)
        if kind is not None:
            out.append((dev, kind))
    return out


class SchedulerKnob(SelectionKnob):
    family = "disk"
    coupling = ""  # resets the old scheduler's own tunables, which are no knobs here

    def __init__(self, sys: TargetRoot, dev: str) -> None:
        path = device_dir(sys, dev) or f"block/{dev}"
        super().__init__(f"disk:{dev}:scheduler", sys, f"{path}/queue/scheduler")


class ReadAheadKnob(Knob):
    family = "disk"
    coupling = ""

    def __init__(self, sys: TargetRoot, dev: str) -> None:
        super().__init__(f"disk:{dev}:read_ahead_kb")
        self.sys = sys
        self.path = f"{device_dir(sys, dev) or f'block/{dev}'}/queue/read_ahead_kb"

    def read(self) -> str | None:
        return read_attr(self.sys, self.path)

    def write(self, value: str) -> None:
        write_attr(self.sys, self.path, value)


def check_scheduler(value: str) -> str:
    if not SCHED_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid scheduler name")
    return value


def check_read_ahead(value: str) -> str:
    if not value.isdigit() or not 0 <= int(value) <= 65536:
        raise ValueError(f"read_ahead_kb must be an integer 0..65536, got {value!r}")
    return str(int(value))


def pick_scheduler(knob: SchedulerKnob, prefs: list[str]) -> str:
    """The first preference the device offers ("none" then "noop" for old kernels)."""
    offered = knob.options()
    for p in prefs:
        if p in offered:
            return p
    return prefs[0]


def expand(
    sys: TargetRoot,
    schedulers: dict[str, list[str]],
    read_ahead: dict[str, str],
    include: list[str] | None,
) -> list[tuple[Knob, str, str]]:
    """schedulers/read_ahead map a device type (or "default") to the wanted value."""
    out: list[tuple[Knob, str, str]] = []
    devs = devices(sys, include)
    if not devs and (schedulers or read_ahead):
        absent = AbsentKnob("disk:*", "disk", "no tunable block devices here")
        out.append((absent, "-", "disk"))
    for dev, kind in devs:
        prefs = schedulers.get(kind, schedulers.get("default"))
        if prefs:
            sk = SchedulerKnob(sys, dev)
            out.append((sk, pick_scheduler(sk, prefs), f"scheduler.{kind}"))
        ra = read_ahead.get(kind, read_ahead.get("default"))
        if ra is not None:
            out.append((ReadAheadKnob(sys, dev), ra, f"read_ahead_kb.{kind}"))
    return out


def knob_from_id(sys: TargetRoot, dev: str, attr: str) -> Knob:
    if attr == "scheduler":
        return SchedulerKnob(sys, dev)
    if attr == "read_ahead_kb":
        return ReadAheadKnob(sys, dev)
    raise ValueError(f"unknown disk knob {attr!r}")
