"""redact(): serials, UUIDs and MACs never reach a caller without read-sensitive."""

from __future__ import annotations

from pathlib import Path

from oseprovd.discovery import DiscoveryEngine, SystemRoots, redact
from oseprovd.discovery.collectors.block import BlockDevice
from oseprovd.discovery.collectors.dmi import DmiInfo
from oseprovd.discovery.collectors.nics import NetInterface
from oseprovd.discovery.redact import sensitive_fields
from tests.unit.discovery.helpers import dmi_tree, symlink, write

SECRETS = ("SERIAL-XYZZY-1", "4c4c4544-0058-5110-8039-b7c04f504b32", "BOARD-XYZZY-2",
           "CHASSIS-XYZZY-3", "aa:bb:cc:dd:ee:f1", "DISK-XYZZY-4", "BAT-XYZZY-5")


def _tree(base: Path) -> None:
    dmi_tree(base, {"sys_vendor": "Dell Inc.", "product_name": "PowerEdge R740",
                    "product_serial": SECRETS[0], "product_uuid": SECRETS[1],
                    "board_serial": SECRETS[2], "chassis_serial": SECRETS[3],
                    "chassis_type": "23"})
    write(base, "sys/devices/virtual/net/eth9/address", SECRETS[4] + "\n")
    symlink(base, "sys/class/net/eth9", "../../devices/virtual/net/eth9")
    write(base, "sys/devices/virtual/block/vdz/size", "8\n")
    write(base, "sys/devices/virtual/block/vdz/serial", SECRETS[5] + "\n")
    symlink(base, "sys/block/vdz", "../devices/virtual/block/vdz")
    write(base, "sys/class/power_supply/BAT0/type", "Battery\n")
    write(base, "sys/class/power_supply/BAT0/serial_number", SECRETS[6] + "\n")


def test_redact_removes_every_serial_uuid_and_mac(sandbox: Path) -> None:
    _tree(sandbox)
    report = DiscoveryEngine(SystemRoots.sandbox(sandbox)).collect_sync(["hardware"])
    full = report.model_dump_json()
    for secret in SECRETS:
        assert secret in full  # the collectors did read them
    clean = redact(report).model_dump_json()
    for secret in SECRETS:
        assert secret not in clean
    # Everything else is kept.
    assert "PowerEdge R740" in clean and "eth9" in clean and "vdz" in clean
    assert report.dmi is not None and report.dmi.product_serial == SECRETS[0]  # not mutated


def test_sensitive_fields_are_declared_where_expected() -> None:
    assert {"product_serial", "product_uuid", "board_serial", "chassis_serial"} <= \
        sensitive_fields(DmiInfo)
    assert {"mac", "permanent_mac"} <= sensitive_fields(NetInterface)
    assert {"serial", "wwid"} <= sensitive_fields(BlockDevice)
    assert "product_name" not in sensitive_fields(DmiInfo)
