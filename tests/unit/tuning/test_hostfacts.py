"""Basic facts from procfs/sysfs: a sandbox laptop, an Azure guest, and this machine."""

from __future__ import annotations

import os
from pathlib import Path

from oseprovd.tuning.hostfacts import AZURE_ASSET_TAG, DMI, read_machine_facts
from oseprovd.tuning.roots import TuningRoots

from . import sandbox

CPUINFO_INTEL = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse\n\n" \
                "processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse\n"


def put(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_sandbox_laptop_on_battery(tmp_path: Path):
    roots = sandbox.build(tmp_path)
    put(tmp_path / "proc/cpuinfo", CPUINFO_INTEL)
    put(tmp_path / "proc/meminfo", "MemTotal:       16318480 kB\nMemFree: 1 kB")
    put(tmp_path / "sys" / DMI / "chassis_type", "10")
    put(tmp_path / "sys" / DMI / "sys_vendor", "LENOVO")
    for name, kind in (("BAT0", "Battery"), ("AC", "Mains")):
        dev = tmp_path / f"sys/devices/LNXSYSTM:00/{name}/power_supply/{name}"
        put(dev / "type", kind)
        put(dev / ("present" if kind == "Battery" else "online"), "1")
        link = tmp_path / "sys/class/power_supply" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f"../../devices/LNXSYSTM:00/{name}/power_supply/{name}", link)
    facts = read_machine_facts(roots)
    assert facts.chassis == "notebook" and facts.has_battery and facts.on_ac_power is True
    assert facts.cpu_vendor == "intel" and facts.cpu_count == 2
    assert facts.memory_bytes == 16318480 * 1024
    assert facts.virtualization == "none" and facts.cloud_provider == "none"
    assert facts.disk_types == ["nvme", "rotational", "ssd", "virtual"]
    assert facts.kernel_release == sandbox.RELEASE


def test_sandbox_azure_guest(tmp_path: Path):
    roots = sandbox.build(tmp_path)
    put(tmp_path / "proc/cpuinfo", CPUINFO_INTEL.replace("fpu sse", "fpu hypervisor"))
    put(tmp_path / "sys" / DMI / "sys_vendor", "Microsoft Corporation")
    put(tmp_path / "sys" / DMI / "product_name", "Virtual Machine")
    put(tmp_path / "sys" / DMI / "chassis_type", "3")
    put(tmp_path / "sys" / DMI / "chassis_asset_tag", AZURE_ASSET_TAG)
    facts = read_machine_facts(roots)
    assert (facts.virtualization, facts.cloud_provider, facts.chassis) == (
        "microsoft", "azure", "vm")


def test_this_machine(tmp_path: Path):
    facts = read_machine_facts(TuningRoots.host())
    meminfo = Path("/proc/meminfo").read_text().splitlines()[0].split()
    assert facts.memory_bytes == int(meminfo[1]) * 1024
    assert facts.cpu_count == os.sysconf("SC_NPROCESSORS_ONLN")
    assert facts.kernel_release == os.uname().release
