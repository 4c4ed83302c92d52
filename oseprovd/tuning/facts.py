"""What tuning needs to know about a machine. Discovery fills this in; tests build it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.roots import read_attr

DiskType = Literal["nvme", "ssd", "rotational", "virtual"]
PowerManager = Literal["power-profiles-daemon", "tuned", "tlp"]


class MachineFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    virtualization: str = "none"  # systemd-detect-virt's word: none, kvm, xen, microsoft...
    cloud_provider: str = "none"  # aws, gcp, azure, none
    chassis: str = "unknown"  # hostnamectl's word: desktop, laptop, server, vm...
    has_battery: bool = False
    on_ac_power: bool | None = None
    cpu_vendor: str = "unknown"  # intel, amd, arm...
    cpu_count: int = Field(default=1, ge=1)
    memory_bytes: int | None = Field(default=None, ge=0)  # None: unknown
    disk_types: list[DiskType] = []
    kernel_release: str = ""
    power_managers: list[PowerManager] = []  # the ones found active
    roles: list[str] = []  # workloads found, e.g. "database"

    @property
    def virtual(self) -> bool:
        return self.virtualization != "none"

    @property
    def memory_gib(self) -> float | None:
        return None if self.memory_bytes is None else self.memory_bytes / 2**30


# Evidence that another power manager is active: its bus name, or its pid file.
POWER_BUS_NAMES: dict[str, PowerManager] = {
    "net.hadess.PowerProfiles": "power-profiles-daemon",
    "org.freedesktop.UPower.PowerProfiles": "power-profiles-daemon",
    "com.redhat.tuned": "tuned",
}
POWER_PID_FILES: dict[str, PowerManager] = {
    "run/tuned/tuned.pid": "tuned",
    "run/power-profiles-daemon.pid": "power-profiles-daemon",
}
# TLP has no daemon; an enabled unit is the evidence.
POWER_UNIT_LINKS: dict[str, PowerManager] = {
    "etc/systemd/system/multi-user.target.wants/tlp.service": "tlp",
}


def detect_power_managers(
    bus_names: list[str], target: TargetRoot, proc: TargetRoot
) -> list[PowerManager]:
    """Power managers active on this machine, from names owned on the system bus and
    pid/unit evidence under the target root."""
    found: set[PowerManager] = {POWER_BUS_NAMES[n] for n in bus_names if n in POWER_BUS_NAMES}
    for rel, manager in POWER_PID_FILES.items():
        pid = read_attr(target, rel)
        if pid and pid.isdigit() and proc.lstat(pid) is not None:
            found.add(manager)
    for rel, manager in POWER_UNIT_LINKS.items():
        if target.lstat(rel) is not None:
            found.add(manager)
    return sorted(found)
