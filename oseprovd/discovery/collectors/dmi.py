"""DMI/SMBIOS identity from /sys/class/dmi/id: vendor, product, board, chassis, BIOS."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from oseprovd.discovery.fsread import read_attr
from oseprovd.discovery.redact import sensitive
from oseprovd.discovery.roots import SystemRoots

# SMBIOS 3.x, table 17 (System Enclosure or Chassis Types).
CHASSIS_TYPES = {
    1: "Other", 2: "Unknown", 3: "Desktop", 4: "Low Profile Desktop", 5: "Pizza Box",
    6: "Mini Tower", 7: "Tower", 8: "Portable", 9: "Laptop", 10: "Notebook",
    11: "Hand Held", 12: "Docking Station", 13: "All in One", 14: "Sub Notebook",
    15: "Space-saving", 16: "Lunch Box", 17: "Main Server Chassis", 18: "Expansion Chassis",
    19: "SubChassis", 20: "Bus Expansion Chassis", 21: "Peripheral Chassis",
    22: "RAID Chassis", 23: "Rack Mount Chassis", 24: "Sealed-case PC", 25: "Multi-system",
    26: "Compact PCI", 27: "Advanced TCA", 28: "Blade", 29: "Blade Enclosure", 30: "Tablet",
    31: "Convertible", 32: "Detachable", 33: "IoT Gateway", 34: "Embedded PC",
    35: "Mini PC", 36: "Stick PC",
}

# Coarse class as hostnamed reports it.
_CHASSIS_CLASS = {
    3: "desktop", 4: "desktop", 5: "desktop", 6: "desktop", 7: "desktop", 8: "laptop",
    9: "laptop", 10: "laptop", 11: "handset", 13: "desktop", 14: "laptop", 15: "desktop",
    16: "desktop", 17: "server", 23: "server", 24: "desktop", 25: "server", 28: "server",
    29: "server", 30: "tablet", 31: "convertible", 32: "tablet", 33: "embedded",
    34: "embedded", 35: "desktop", 36: "desktop",
}


class DmiInfo(BaseModel):
    available: bool = False
    sys_vendor: str | None = None
    product_name: str | None = None
    product_version: str | None = None
    product_family: str | None = None
    product_sku: str | None = None
    product_serial: str | None = sensitive()
    product_uuid: str | None = sensitive()
    board_vendor: str | None = None
    board_name: str | None = None
    board_version: str | None = None
    board_serial: str | None = sensitive()
    board_asset_tag: str | None = sensitive()
    chassis_vendor: str | None = None
    chassis_type: int | None = None
    chassis_type_name: str | None = None
    chassis_class: str | None = None  # desktop, laptop, server, tablet, ... (hostnamed's words)
    chassis_version: str | None = None
    chassis_serial: str | None = sensitive()
    chassis_asset_tag: str | None = None  # clouds put fixed markers here (Azure, Oracle)
    bios_vendor: str | None = None
    bios_version: str | None = None
    bios_date: str | None = None
    bios_release: str | None = None


_PLACEHOLDERS = frozenset({
    "to be filled by o.e.m.", "default string", "not specified", "not applicable",
    "system product name", "system manufacturer", "none", "n/a", "0", "00000000",
    "0123456789", "123456789", "system serial number", "chassis serial number",
    "base board serial number", "no asset information", "asset-1234567890",
})


def clean(value: str | None) -> str | None:
    """Drop the filler strings that firmware writes instead of real values."""
    if value is None or value.strip().lower() in _PLACEHOLDERS:
        return None
    return value.strip()


def dmi_dir(roots: SystemRoots) -> Path:
    return roots.sys / "class" / "dmi" / "id"


def collect(roots: SystemRoots) -> DmiInfo:
    d = dmi_dir(roots)
    if not d.is_dir():
        return DmiInfo()
    fields = {name: clean(read_attr(d / name)) for name in DmiInfo.model_fields
              if name not in ("available", "chassis_type", "chassis_type_name",
                              "chassis_class")}
    ctype_raw = read_attr(d / "chassis_type")
    ctype = int(ctype_raw) & 0x7F if ctype_raw and ctype_raw.isdigit() else None
    return DmiInfo(available=True, chassis_type=ctype,
                   chassis_type_name=CHASSIS_TYPES.get(ctype or 0),
                   chassis_class=_CHASSIS_CLASS.get(ctype or 0), **fields)
