"""Cloud and virtualization detection on sandbox DMI trees shaped like real guests."""

from __future__ import annotations

from pathlib import Path

import pytest

from oseprovd.discovery.collectors import cloud, dmi, virt
from oseprovd.discovery.roots import SystemRoots
from tests.unit.discovery.helpers import dmi_tree, write

# DMI strings as these guests really show them.
CLOUDS: dict[str, dict[str, str]] = {
    "aws": {"sys_vendor": "Amazon EC2", "product_name": "m5.large", "bios_vendor": "Amazon EC2",
            "board_vendor": "Amazon EC2", "chassis_vendor": "Amazon EC2",
            "chassis_asset_tag": "Amazon EC2", "board_asset_tag": "i-0123456789abcdef0",
            "chassis_type": "1", "product_uuid": "ec2e1916-9099-7caf-fd21-012345678901"},
    "gcp": {"sys_vendor": "Google", "product_name": "Google Compute Engine",
            "bios_vendor": "Google", "board_vendor": "Google", "chassis_vendor": "Google",
            "chassis_type": "1"},
    "azure": {"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine",
              "bios_vendor": "Microsoft Corporation", "chassis_vendor": "Microsoft Corporation",
              "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77", "chassis_type": "3"},
    "openstack": {"sys_vendor": "OpenStack Foundation", "product_name": "OpenStack Nova",
                  "bios_vendor": "SeaBIOS", "chassis_vendor": "QEMU", "chassis_type": "1"},
    "oracle": {"sys_vendor": "QEMU", "product_name": "Standard PC (i440FX + PIIX, 1996)",
               "bios_vendor": "SeaBIOS", "chassis_asset_tag": "OracleCloud.com",
               "chassis_type": "1"},
    "digitalocean": {"sys_vendor": "DigitalOcean", "product_name": "Droplet",
                     "bios_vendor": "DigitalOcean", "chassis_type": "1"},
    "hetzner": {"sys_vendor": "Hetzner", "product_name": "vServer", "bios_vendor": "Hetzner",
                "chassis_type": "1"},
    "alibaba": {"sys_vendor": "Alibaba Cloud", "product_name": "Alibaba Cloud ECS",
                "bios_vendor": "SeaBIOS", "chassis_type": "1"},
}

DELL: dict[str, str] = {
    "sys_vendor": "Dell Inc.", "product_name": "PowerEdge R740", "bios_vendor": "Dell Inc.",
    "bios_version": "2.12.2", "board_vendor": "Dell Inc.", "board_name": "06WXJT",
    "chassis_vendor": "Dell Inc.", "chassis_type": "23", "product_serial": "7XQ9PK2",
    "chassis_serial": "7XQ9PK2", "board_serial": ".7XQ9PK2.CNFCP0098A01X2.",
    "product_uuid": "4c4c4544-0058-5110-8039-b7c04f504b32", "chassis_asset_tag": "",
}


@pytest.mark.parametrize("provider", sorted(CLOUDS))
def test_each_cloud_is_found(sandbox: Path, provider: str) -> None:
    dmi_tree(sandbox, CLOUDS[provider])
    info = cloud.collect(SystemRoots.sandbox(sandbox))
    assert info.status == "found"
    assert info.provider == provider
    assert info.evidence


def test_bare_metal_dell_is_no_cloud_and_no_vm(sandbox: Path) -> None:
    dmi_tree(sandbox, DELL)
    write(sandbox, "proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu vme sse2\n\n")
    roots = SystemRoots.sandbox(sandbox)
    assert cloud.collect(roots).status == "none"
    assert cloud.collect(roots).provider is None
    v = virt.collect(roots)
    assert (v.vm, v.container, v.virtualized) == (None, None, False)
    info = dmi.collect(roots)
    assert (info.chassis_type_name, info.chassis_class) == ("Rack Mount Chassis", "server")


def test_no_dmi_at_all_is_none(sandbox: Path) -> None:
    assert cloud.collect(SystemRoots.sandbox(sandbox)).status == "none"
    assert dmi.collect(SystemRoots.sandbox(sandbox)).available is False


def test_on_premises_hyperv_is_only_maybe_azure(sandbox: Path) -> None:
    dmi_tree(sandbox, {"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine",
                       "chassis_asset_tag": "2817-4093-1234"})
    info = cloud.collect(SystemRoots.sandbox(sandbox))
    assert (info.status, info.provider) == ("maybe", "azure")
    assert virt.collect(SystemRoots.sandbox(sandbox)).vm == "microsoft"


def test_xen_era_ec2_found_from_bios_version(sandbox: Path) -> None:
    dmi_tree(sandbox, {"sys_vendor": "Xen", "product_name": "HVM domU",
                       "bios_vendor": "Xen", "bios_version": "4.11.amazon"})
    write(sandbox, "sys/hypervisor/uuid", "ec2a3f1b-0000-0000-0000-000000000000\n")
    roots = SystemRoots.sandbox(sandbox)
    info = cloud.collect(roots)
    assert (info.status, info.provider) == ("found", "aws")
    assert virt.collect(roots).vm == "xen"


def test_evidence_never_quotes_sensitive_values(sandbox: Path) -> None:
    dmi_tree(sandbox, CLOUDS["aws"])
    info = cloud.collect(SystemRoots.sandbox(sandbox))
    dumped = info.model_dump_json()
    assert "ec2e1916" not in dumped and "i-0123456789abcdef0" not in dumped


def test_ec2_guest_in_docker_sandbox(sandbox: Path) -> None:
    dmi_tree(sandbox, CLOUDS["aws"])
    write(sandbox, ".dockerenv", "")
    write(sandbox, "proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu hypervisor sse2\n\n")
    v = virt.collect(SystemRoots.sandbox(sandbox))
    assert (v.vm, v.container, v.hypervisor_flag) == ("amazon", "docker", True)


@pytest.mark.parametrize(("cgroup", "kind"), [
    ("0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-ab.scope\n", "kubernetes"),
    ("0::/machine.slice/libpod-1f2e.scope\n", "podman"),
    ("0::/lxc.payload.web/\n", "lxc"),
    ("12:memory:/docker/0123abcd\n", "docker"),
])
def test_container_kind_from_pid1_cgroup(sandbox: Path, cgroup: str, kind: str) -> None:
    write(sandbox, "proc/1/cgroup", cgroup)
    assert virt.collect(SystemRoots.sandbox(sandbox)).container == kind


def test_systemd_container_marker_wins(sandbox: Path) -> None:
    write(sandbox, "run/systemd/container", "systemd-nspawn\n")
    write(sandbox, ".dockerenv", "")
    assert virt.collect(SystemRoots.sandbox(sandbox)).container == "systemd-nspawn"
