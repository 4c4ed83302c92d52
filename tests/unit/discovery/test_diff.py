"""Diffs of two scans show exactly the change made between them."""

from __future__ import annotations

from pathlib import Path

from oseprovd.discovery import DiscoveryEngine, Report, SystemRoots
from oseprovd.discovery.collectors.memory import MemoryInfo
from oseprovd.discovery.collectors.otherpkgs import Flatpak, OtherPackages
from oseprovd.discovery.collectors.packages import PackagesInfo
from oseprovd.discovery.diff import Change, diff_models, diff_reports
from oseprovd.discovery.smbios import MemoryDevice
from tests.unit.discovery.helpers import symlink, write


def _scan(root: Path) -> Report:
    return DiscoveryEngine(SystemRoots.sandbox(root)).collect_sync(["all"])


def test_adding_a_unit_and_a_package_is_exactly_two_changes(sandbox: Path) -> None:
    write(sandbox, "usr/lib/systemd/system/a.service", "[Service]\nExecStart=/bin/true\n")
    write(sandbox, "var/lib/dpkg/status", "Package: a\nStatus: install ok installed\n"
          "Architecture: amd64\nVersion: 1\n\n")
    before = _scan(sandbox)
    write(sandbox, "usr/lib/systemd/system/b.service", "[Service]\nExecStart=/bin/true\n")
    with open(sandbox / "var/lib/dpkg/status", "a") as f:
        f.write("Package: b\nStatus: install ok installed\nArchitecture: all\nVersion: 2\n\n")
    after = _scan(sandbox)
    changes = diff_reports(before, after).changes
    assert sorted(changes, key=lambda c: c.path) == [
        Change(path="packages.installed", kind="changed", old=1, new=2),
        Change(path="packages.packages[b,all]", kind="added"),
        Change(path="services.systemd_units[b.service]", kind="added"),
    ]


def test_enabling_a_unit_and_cloud_change(sandbox: Path) -> None:
    unit = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
    write(sandbox, "usr/lib/systemd/system/web.service", unit)
    write(sandbox, "sys/class/dmi/id/sys_vendor", "Dell Inc.\n")
    before = _scan(sandbox)
    symlink(sandbox, "etc/systemd/system/multi-user.target.wants/web.service",
            "/usr/lib/systemd/system/web.service")
    after = _scan(sandbox)
    assert diff_reports(before, after).changes == [
        Change(path="services.systemd_units[web.service].state", kind="changed",
               old="disabled", new="enabled"),
        Change(path="services.systemd_units[web.service].enabled_in", kind="added",
               new="multi-user.target"),
    ]


def test_same_machine_twice_has_no_changes() -> None:
    engine = DiscoveryEngine()
    # Collectors whose answer other work on this shared machine can't change (loop
    # devices, mounts and packages come and go with other tests); memory and cpu have
    # values that move by themselves, which the diff must ignore.
    subset = ["!all", "cpu", "memory", "dmi", "virtualization", "os", "cloud", "gpus"]
    a = engine.collect_sync(subset)
    b = engine.collect_sync(subset)
    assert diff_reports(a, b).changes == []


def test_a_dimm_pulled_and_a_flatpak_added() -> None:
    a1 = MemoryDevice(handle=0x1100, locator="DIMM A1", bank_locator="BANK 0",
                      size_bytes=16 << 30)
    b1 = MemoryDevice(handle=0x1101, locator="DIMM B1", bank_locator="BANK 1",
                      size_bytes=16 << 30)
    # The firmware renumbers handles when a module goes: the slot is what identifies it.
    empty_b1 = b1.model_copy(update={"handle": 0x1200, "installed": False,
                                     "size_bytes": None})
    changes = diff_models(MemoryInfo(dimms=[a1, b1]), MemoryInfo(dimms=[a1, empty_b1]))
    assert {(c.path, c.old, c.new) for c in changes.changes} == {
        ("dimms[DIMM B1,BANK 1].handle", 0x1101, 0x1200),
        ("dimms[DIMM B1,BANK 1].installed", True, False),
        ("dimms[DIMM B1,BANK 1].size_bytes", 16 << 30, None)}
    app = Flatpak(kind="app", id="org.x.App", architecture="x86_64", branch="stable")
    changes = diff_models(PackagesInfo(), PackagesInfo(other_managers=OtherPackages(
        flatpaks=[app])))
    assert [(c.path, c.kind) for c in changes.changes] == [
        ("other_managers.flatpaks[app,org.x.App,x86_64,stable]", "added")]
