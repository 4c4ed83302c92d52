"""Basic MachineFacts read from procfs/sysfs, until the discovery engine provides them.

Only cheap, local evidence: DMI strings, /proc/cpuinfo, /proc/meminfo, power supplies and
block devices. Discovery can do better (cloud metadata, systemd-detect-virt); it fills
the same model.
"""

from __future__ import annotations

from typing import cast

from oseprovd.tuning import disk
from oseprovd.tuning.facts import DiskType, MachineFacts, detect_power_managers
from oseprovd.tuning.roots import TuningRoots, list_dir, read_attr, resolve_sys_link

DMI = "devices/virtual/dmi/id"
# SMBIOS chassis types, named as hostnamectl and our profiles name them.
CHASSIS = {
    3: "desktop", 4: "low-profile-desktop", 5: "pizza-box", 6: "mini-tower", 7: "tower",
    8: "portable", 9: "laptop", 10: "notebook", 11: "handheld", 13: "all-in-one",
    14: "sub-notebook", 15: "space-saving", 16: "lunch-box", 17: "main-server-chassis",
    23: "rack-mount", 24: "sealed-case-pc", 25: "multi-system", 28: "blade",
    30: "tablet", 31: "convertible", 32: "detachable", 35: "mini-pc",
}
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
VIRT_VENDORS = {
    "qemu": "qemu", "kvm": "kvm", "amazon ec2": "amazon", "google": "google",
    "vmware": "vmware", "xen": "xen", "innotek": "oracle", "parallels": "parallels",
    "bochs": "bochs",
}
DB_EVIDENCE = ("usr/lib/postgresql", "usr/sbin/mysqld", "usr/sbin/mariadbd",
               "usr/bin/mongod", "usr/bin/redis-server")


def _dmi(roots: TuningRoots, name: str) -> str:
    return (read_attr(roots.sys, f"{DMI}/{name}") or "").strip()


def _cpuinfo(roots: TuningRoots) -> tuple[str, int, bool]:
    text = read_attr(roots.proc, "cpuinfo") or ""
    vendor, count, hypervisor = "unknown", 0, False
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            count += 1
        elif key == "vendor_id":
            vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd",
                      "HygonGenuine": "hygon"}.get(value, value.lower() or "unknown")
        elif key == "CPU implementer" and vendor == "unknown":
            vendor = "arm"
        elif key == "flags" and "hypervisor" in value.split():
            hypervisor = True
    return vendor, max(count, 1), hypervisor


def _memory(roots: TuningRoots) -> int | None:
    for line in (read_attr(roots.proc, "meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def _power_supplies(roots: TuningRoots) -> tuple[bool, bool | None]:
    battery, ac = False, None
    for name in list_dir(roots.sys, "class/power_supply"):
        if not disk.DEVICE_RE.fullmatch(name.lower()):
            continue
        path = resolve_sys_link(roots.sys, f"class/power_supply/{name}")
        if path is None:
            continue
        kind = read_attr(roots.sys, f"{path}/type")
        if kind == "Battery" and read_attr(roots.sys, f"{path}/present") != "0":
            battery = True
        elif kind == "Mains":
            ac = (ac or False) or read_attr(roots.sys, f"{path}/online") == "1"
    return battery, ac


def _virtualization(roots: TuningRoots, hypervisor_flag: bool) -> str:
    vendor = " ".join(_dmi(roots, n).lower() for n in ("sys_vendor", "product_name",
                                                       "bios_vendor"))
    if "microsoft" in vendor and "virtual" in vendor:
        return "microsoft"
    for needle, name in VIRT_VENDORS.items():
        if needle in vendor:
            return name
    xen = read_attr(roots.sys, "hypervisor/type")
    if xen:
        return xen
    return "vm-other" if hypervisor_flag else "none"


def _cloud(roots: TuningRoots) -> str:
    vendors = " ".join(_dmi(roots, n) for n in ("sys_vendor", "bios_vendor", "product_name"))
    if "Amazon EC2" in vendors or _dmi(roots, "product_uuid").lower().startswith("ec2"):
        return "aws"
    if "Google Compute Engine" in vendors or "Google" in _dmi(roots, "bios_vendor"):
        return "gcp"
    if _dmi(roots, "chassis_asset_tag") == AZURE_ASSET_TAG:
        return "azure"
    return "none"


def read_machine_facts(roots: TuningRoots, bus_names: list[str] | None = None) -> MachineFacts:
    vendor, cpus, hypervisor = _cpuinfo(roots)
    chassis_num = _dmi(roots, "chassis_type")
    virt = _virtualization(roots, hypervisor)
    chassis = CHASSIS.get(int(chassis_num), "unknown") if chassis_num.isdigit() else "unknown"
    if virt != "none" and chassis in ("unknown", "desktop"):
        chassis = "vm"  # hypervisors report "desktop" or "other" for their machines
    battery, ac = _power_supplies(roots)
    types = sorted({cast(DiskType, t) for _, t in disk.devices(roots.sys, None)})
    return MachineFacts(
        virtualization=virt,
        cloud_provider=_cloud(roots),
        chassis=chassis,
        has_battery=battery,
        on_ac_power=ac,
        cpu_vendor=vendor,
        cpu_count=cpus,
        memory_bytes=_memory(roots),
        disk_types=types,
        kernel_release=read_attr(roots.proc, "sys/kernel/osrelease") or "",
        power_managers=detect_power_managers(bus_names or [], roots.target, roots.proc),
        roles=["database"] if any(roots.target.lstat(p) for p in DB_EVIDENCE) else [],
    )
