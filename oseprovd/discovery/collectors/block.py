"""Block devices from /sys/block, with partitions and what is mounted from them."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from oseprovd.discovery.fsread import MountTable, listdir, read_attr, read_int
from oseprovd.discovery.redact import sensitive
from oseprovd.discovery.roots import SystemRoots

SECTOR = 512  # sysfs 'size' is always in 512-byte units, whatever the logical block size


class MountRef(BaseModel):
    mountpoint: str
    fstype: str
    options: list[str]


class Partition(BaseModel):
    name: str
    number: int | None = None
    start_sector: int | None = None
    size_bytes: int = 0
    device: str | None = None  # major:minor
    mounts: list[MountRef] = []


class BlockDevice(BaseModel):
    name: str
    device: str | None = None  # major:minor
    size_bytes: int = 0
    transport: str  # nvme, sata, scsi, usb, virtio, mmc, xen, loop, dm, md, zram, ram, ...
    model: str | None = None
    vendor: str | None = None
    serial: str | None = sensitive()
    wwid: str | None = sensitive()
    rotational: bool | None = None
    removable: bool | None = None
    read_only: bool | None = None
    logical_block_size: int | None = None
    physical_block_size: int | None = None
    scheduler: str | None = None
    schedulers: list[str] = []
    driver: str | None = None
    holders: list[str] = []  # dm/md devices built on this one
    partitions: list[Partition] = []
    mounts: list[MountRef] = []


class BlockInfo(BaseModel):
    devices: list[BlockDevice] = []


_VIRTUAL_PREFIXES = (("loop", "loop"), ("dm-", "dm"), ("md", "md"), ("zram", "zram"),
                     ("ram", "ram"), ("nbd", "nbd"), ("rbd", "rbd"))


def transport_of(name: str, real: str) -> str:
    """How a disk is attached, from its sysfs device path."""
    parts = real.split("/")
    if "usb" in real.split("/devices/", 1)[-1]:
        return "usb"
    checks = (("nvme", "nvme"), ("virtio", "virtio"), ("mmc_host", "mmc"), ("vbd-", "xen"))
    for needle, kind in checks:
        if any(p.startswith(needle) for p in parts):
            return kind
    if any(p.startswith("ata") for p in parts):
        return "sata"
    if any(p.startswith("host") for p in parts) or "/scsi" in real:
        return "scsi"
    for prefix, kind in _VIRTUAL_PREFIXES:
        if name.startswith(prefix):
            return kind
    return "virtual" if "/devices/virtual/" in real else "unknown"


def _schedulers(text: str | None) -> tuple[str | None, list[str]]:
    if not text:
        return None, []
    names = [w.strip("[]") for w in text.split()]
    active = next((w.strip("[]") for w in text.split() if w.startswith("[")), None)
    return active, names


def _mounts_by_device(table: MountTable) -> dict[str, list[MountRef]]:
    result: dict[str, list[MountRef]] = {}
    for e in table.entries:
        ref = MountRef(mountpoint=e.mountpoint, fstype=e.fstype, options=e.options.split(","))
        result.setdefault(f"{e.major}:{e.minor}", []).append(ref)
    return result


def _partitions(dev_dir: Path, name: str, mounts: dict[str, list[MountRef]]) -> list[Partition]:
    parts: list[Partition] = []
    for entry in listdir(dev_dir):
        d = dev_dir / entry
        if not entry.startswith(name) or not (d / "partition").exists():
            continue
        devnum = read_attr(d / "dev")
        parts.append(Partition(name=entry, number=read_int(d / "partition"),
                               start_sector=read_int(d / "start"),
                               size_bytes=(read_int(d / "size") or 0) * SECTOR,
                               device=devnum, mounts=mounts.get(devnum or "", [])))
    return parts


def _device(block_dir: Path, name: str, mounts: dict[str, list[MountRef]]) -> BlockDevice:
    d = block_dir / name
    real = os.path.realpath(d)
    queue = d / "queue"
    hw = d / "device"
    active, available = _schedulers(read_attr(queue / "scheduler"))
    rotational = read_int(queue / "rotational")
    removable = read_int(d / "removable")
    ro = read_int(d / "ro")
    devnum = read_attr(d / "dev")
    driver_link = hw / "driver"
    driver = os.path.basename(os.readlink(driver_link)) if driver_link.is_symlink() else None
    return BlockDevice(
        name=name, device=devnum, size_bytes=(read_int(d / "size") or 0) * SECTOR,
        transport=transport_of(name, real),
        model=read_attr(hw / "model") or read_attr(d / "dm" / "name"),
        vendor=read_attr(hw / "vendor"),
        serial=read_attr(hw / "serial") or read_attr(d / "serial"),
        wwid=read_attr(hw / "wwid") or read_attr(d / "wwid"),
        rotational=None if rotational is None else bool(rotational),
        removable=None if removable is None else bool(removable),
        read_only=None if ro is None else bool(ro),
        logical_block_size=read_int(queue / "logical_block_size"),
        physical_block_size=read_int(queue / "physical_block_size"),
        scheduler=active, schedulers=available, driver=driver,
        holders=listdir(d / "holders"),
        partitions=_partitions(d, name, mounts),
        mounts=mounts.get(devnum or "", []),
    )


def collect(roots: SystemRoots) -> BlockInfo:
    block_dir = roots.sys / "block"
    mounts = _mounts_by_device(MountTable.load(roots.proc))
    return BlockInfo(devices=[_device(block_dir, n, mounts) for n in listdir(block_dir)])
