"""Tuning's machine facts come from the discovery engine: sandbox machines shaped like
cloud guests, a Dell server and a laptop get the profile meant for them, and this
machine's facts agree with the kernel and systemd-detect-virt."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from oseprovd.config import Settings
from oseprovd.discovery import DiscoveryEngine, SystemRoots
from oseprovd.tuning import disk
from oseprovd.tuning.engine import TuningEngine
from oseprovd.tuning.facts import MachineFacts
from oseprovd.tuning.fromdiscovery import FACTS_SUBSET, machine_facts_from_report
from oseprovd.tuning.journal import FileJournal
from oseprovd.tuning.profiles import ProfileCatalog
from tests.unit.discovery.helpers import dmi_tree, write
from tests.unit.discovery.test_cloud_virt_sandbox import CLOUDS, DELL

from . import sandbox

CPUINFO = ("processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\n"
           "flags\t\t: fpu sse2{flag}\n\n")


def machine_tree(base: Path, dmi: dict[str, str], vm: bool, cpus: int = 4) -> Path:
    for sub in ("proc", "sys", "dev", "run", "etc"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    dmi_tree(base, dmi)
    flag = " hypervisor" if vm else ""
    write(base, "proc/cpuinfo", "".join(CPUINFO.format(n=n, flag=flag) for n in range(cpus)))
    write(base, "proc/meminfo", "MemTotal:       16318480 kB\nMemFree:  1000 kB\n")
    write(base, "proc/sys/kernel/osrelease", "6.1.0-test\n")
    return base


def facts_of(base: Path) -> MachineFacts:
    report = DiscoveryEngine(SystemRoots.sandbox(base)).collect_sync(FACTS_SUBSET)
    assert not [o for o in report.outcomes if o.status != "ok"], report.outcomes
    return machine_facts_from_report(report)


def recommended(tmp_path: Path, facts: MachineFacts) -> str:
    engine = TuningEngine(sandbox.roots(tmp_path / "unused"), FileJournal(tmp_path / "j"),
                          ProfileCatalog(), sandbox.FakeLoader(sandbox.roots(tmp_path).proc))
    return engine.recommend(facts).profile


@pytest.mark.parametrize(("provider", "vm"), [("aws", "amazon"), ("gcp", "google"),
                                              ("azure", "microsoft")])
def test_each_cloud_guest_gets_its_own_profile(tmp_path: Path, provider: str, vm: str):
    facts = facts_of(machine_tree(tmp_path / "m", CLOUDS[provider], vm=True))
    assert (facts.cloud_provider, facts.virtualization, facts.chassis) == (provider, vm, "vm")
    assert recommended(tmp_path, facts) == f"{provider}_guest"


def test_a_vm_that_only_looks_a_bit_like_azure_is_a_plain_virtual_guest(tmp_path: Path):
    hyperv = {"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine",
              "chassis_asset_tag": "2817-4093-1234", "chassis_type": "3"}
    facts = facts_of(machine_tree(tmp_path / "m", hyperv, vm=True))
    assert (facts.cloud_provider, facts.virtualization) == ("none", "microsoft")
    assert recommended(tmp_path, facts) == "virtual_guest"


def test_dell_bare_metal_server(tmp_path: Path):
    facts = facts_of(machine_tree(tmp_path / "m", DELL, vm=False, cpus=8))
    assert (facts.virtualization, facts.cloud_provider, facts.chassis) == (
        "none", "none", "rack-mount")
    assert (facts.cpu_vendor, facts.cpu_count, facts.memory_bytes) == (
        "intel", 8, 16318480 * 1024)
    assert facts.kernel_release == "6.1.0-test" and facts.roles == []
    assert recommended(tmp_path, facts) == "server_production"


def test_laptop_with_a_battery(tmp_path: Path):
    base = machine_tree(tmp_path / "m", {"sys_vendor": "LENOVO", "product_name": "20XW",
                                         "chassis_type": "10"}, vm=False)
    write(base, "sys/class/power_supply/BAT0/type", "Battery\n")
    write(base, "sys/class/power_supply/BAT0/status", "Discharging\n")
    write(base, "sys/class/power_supply/AC/type", "Mains\n")
    write(base, "sys/class/power_supply/AC/online", "0\n")
    facts = facts_of(base)
    assert (facts.chassis, facts.has_battery, facts.on_ac_power) == ("notebook", True, False)
    assert recommended(tmp_path, facts) == "laptop_battery"
    # The same laptop without its battery is a desktop-like machine, not laptop_battery.
    shutil.rmtree(base / "sys/class/power_supply/BAT0")
    facts = facts_of(base)
    assert (facts.has_battery, facts.on_ac_power) == (False, False)
    assert recommended(tmp_path, facts) != "laptop_battery"


def test_a_database_server_is_a_role(tmp_path: Path):
    base = machine_tree(tmp_path / "m", DELL, vm=False)
    write(base, "usr/lib/postgresql/16/bin/postgres", "#!/bin/sh\nexit 0\n", mode=0o755)
    write(base, "etc/postgresql/16/main/postgresql.conf", "port = 5432\n")
    facts = facts_of(base)
    assert facts.roles == ["database"]
    assert recommended(tmp_path, facts) == "database_server"


def test_disk_types_are_the_disks_tuning_would_tune(tmp_path: Path):
    """On the tuning sandbox, discovery's view of the disks matches sandbox.DISKS (and
    the tuning engine's own device list): loop0 is not a disk to tune."""
    roots = sandbox.build(tmp_path)
    report = DiscoveryEngine(SystemRoots(target=tmp_path / "root", proc=tmp_path / "proc",
                                         sys=tmp_path / "sys")).collect_sync(FACTS_SUBSET)
    facts = machine_facts_from_report(report)
    assert facts.disk_types == ["nvme", "rotational", "ssd", "virtual"]
    assert facts.disk_types == sorted({t for _, t in disk.devices(roots.sys, None)})
    assert facts.kernel_release == sandbox.RELEASE


def test_a_failed_section_leaves_facts_unknown(tmp_path: Path):
    report = DiscoveryEngine(SystemRoots.sandbox(tmp_path)).collect_sync(["!all", "!min"])
    facts = machine_facts_from_report(report, ["tuned"])
    assert facts == MachineFacts(power_managers=["tuned"])


def test_this_machine(tmp_path: Path):
    from oseprovd.app import discovery_engine

    engine = discovery_engine(Settings())
    assert engine.roots == SystemRoots()
    facts = machine_facts_from_report(engine.collect_sync(FACTS_SUBSET))
    meminfo = Path("/proc/meminfo").read_text().splitlines()[0].split()
    assert facts.memory_bytes == int(meminfo[1]) * 1024
    assert facts.cpu_count == os.sysconf("SC_NPROCESSORS_ONLN")
    assert facts.kernel_release == os.uname().release
    detect = shutil.which("systemd-detect-virt")
    if detect is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-detect-virt is not installed")
        return
    vm = subprocess.run([detect, "--vm"], capture_output=True, text=True, timeout=10,
                        check=False).stdout.strip()
    assert facts.virtual == (vm != "none")
    # Without a DMI table discovery can only say "vm-other" (docs/discovery.md, known
    # limits): systemd-detect-virt reads CPUID. A name it does give must agree.
    assert facts.virtualization in (vm, "vm-other")
