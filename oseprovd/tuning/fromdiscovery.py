"""MachineFacts from a discovery report: tuning reads no hardware of its own.

The report comes from DiscoveryEngine.collect(FACTS_SUBSET) (the daemon answers it from
its DiscoveryCache; --apply-tuning at boot uses collect_sync). A section that is missing
or failed leaves the facts at their "unknown" defaults, which no profile's conditions
prefer. Only the power managers are not discovery's to know: they are found on the bus
at the time of asking (facts.detect_power_managers) and passed in.
"""

from __future__ import annotations

import fnmatch

from oseprovd.discovery.collectors.block import BlockInfo
from oseprovd.discovery.collectors.dmi import DmiInfo
from oseprovd.discovery.report import Report
from oseprovd.tuning.disk import DEFAULT_EXCLUDE
from oseprovd.tuning.facts import DiskType, MachineFacts, PowerManager

# min = cpu, memory, dmi, virtualization, os.
FACTS_SUBSET = ("min", "block", "power", "cloud", "databases")

CPU_VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "hygon"}
# Discovery's SMBIOS names, as words like hostnamectl's (what profiles match on).
CHASSIS_WORDS = {"rack-mount-chassis": "rack-mount", "hand-held": "handheld",
                 "other": "unknown"}
# Transports of disks that are not physical media of their own.
VIRTUAL_TRANSPORTS = frozenset({"virtio", "xen", "dm", "md", "virtual", "nbd", "rbd"})


def chassis(dmi: DmiInfo | None, virtual: bool) -> str:
    name = (dmi.chassis_type_name or "") if dmi else ""
    word = name.lower().replace(" ", "-") or "unknown"
    word = CHASSIS_WORDS.get(word, word)
    if word == "unknown" and dmi and dmi.chassis_class:
        word = dmi.chassis_class
    if virtual and word in ("unknown", "desktop"):
        return "vm"  # hypervisors report "desktop" or "other" for their machines
    return word


def disk_types(block: BlockInfo | None) -> list[DiskType]:
    """The kinds of the disks tuning would tune: ones with an I/O scheduler, without
    loop, ram and optical devices (as disk.devices() chooses them)."""
    found: set[DiskType] = set()
    for d in block.devices if block else []:
        if not d.schedulers or any(fnmatch.fnmatchcase(d.name, p) for p in DEFAULT_EXCLUDE):
            continue
        if d.transport == "nvme" or d.name.startswith("nvme"):
            found.add("nvme")
        elif d.transport in VIRTUAL_TRANSPORTS or d.name.startswith(("vd", "xvd")):
            found.add("virtual")
        else:
            found.add("rotational" if d.rotational else "ssd")
    return sorted(found)


def machine_facts_from_report(
    report: Report, power_managers: list[PowerManager] | None = None
) -> MachineFacts:
    virt = report.virtualization
    vm = virt.vm if virt and virt.vm else "none"
    cpu, power, cloud = report.cpu, report.power, report.cloud
    mains = [s.online for s in power.supplies
             if s.type == "Mains" and s.online is not None] if power else []
    vendor = (cpu.vendor or "") if cpu else ""
    if cpu and cpu.vendor and cpu.vendor.startswith("0x"):
        vendor = "arm"  # "CPU implementer : 0x41": an ARM core, whoever designed it
    return MachineFacts(
        virtualization=vm,
        # "maybe" (an on-premises Hyper-V looks a bit like Azure) is not a cloud.
        cloud_provider=(cloud.provider or "none") if cloud and cloud.status == "found"
        else "none",
        chassis=chassis(report.dmi, vm != "none"),
        has_battery=any(s.type == "Battery" for s in power.supplies) if power else False,
        on_ac_power=any(mains) if mains else None,
        cpu_vendor=CPU_VENDORS.get(vendor, vendor.lower() or "unknown"),
        cpu_count=max(cpu.logical_cpus, 1) if cpu else 1,
        memory_bytes=(report.memory.total_bytes or None) if report.memory else None,
        disk_types=disk_types(report.block),
        kernel_release=(report.os.kernel.release or "") if report.os else "",
        power_managers=sorted(power_managers or []),
        roles=["database"] if report.databases and report.databases.servers else [],
    )
