"""Mounted filesystems from /proc/self/mountinfo (never stat()ing a mount point)."""

from __future__ import annotations

from pydantic import BaseModel

from oseprovd.discovery.fsread import MountTable
from oseprovd.discovery.roots import SystemRoots

# Pseudo filesystems that say nothing about storage; reported only on request.
PSEUDO_FSTYPES = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "securityfs", "cgroup", "cgroup2", "pstore",
    "bpf", "tracefs", "debugfs", "configfs", "fusectl", "mqueue", "hugetlbfs",
    "binfmt_misc", "efivarfs", "rpc_pipefs", "nsfs", "selinuxfs", "autofs",
})


class Mount(BaseModel):
    mountpoint: str
    source: str
    fstype: str
    options: list[str]
    super_options: list[str]
    device: str  # major:minor
    root: str  # the subtree of the filesystem that is mounted (bind mounts)
    remote: bool
    pseudo: bool


class MountsInfo(BaseModel):
    mounts: list[Mount] = []


def collect(roots: SystemRoots) -> MountsInfo:
    table = MountTable.load(roots.proc)
    return MountsInfo(mounts=[
        Mount(mountpoint=e.mountpoint, source=e.source, fstype=e.fstype,
              options=e.options.split(","),
              super_options=[o for o in e.super_options.split(",") if o],
              device=f"{e.major}:{e.minor}", root=e.root, remote=e.remote,
              pseudo=e.fstype in PSEUDO_FSTYPES)
        for e in table.entries
    ])
