"""Display controllers (PCI class 0x03): vendor, model, driver, from /sys/bus/pci.

Names come from the pci.ids database when the target has it (pciutils/hwdata);
otherwise only the numeric ids and a short vendor name are given.
"""

from __future__ import annotations

from pydantic import BaseModel

from oseprovd.discovery.fsread import TargetReader, link_name, listdir, read_attr, target_reader
from oseprovd.discovery.roots import SystemRoots

PCI_IDS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids")
DISPLAY_CLASS = 0x03
KNOWN_VENDORS = {"10de": "NVIDIA", "1002": "AMD", "8086": "Intel", "1af4": "Red Hat (virtio)",
                 "1234": "QEMU", "15ad": "VMware", "1013": "Cirrus Logic", "102b": "Matrox",
                 "1a03": "ASPEED", "80ee": "VirtualBox", "1414": "Microsoft"}
_SUBCLASSES = {0x00: "VGA", 0x01: "XGA", 0x02: "3D", 0x80: "display"}


class Gpu(BaseModel):
    slot: str  # PCI address, e.g. 0000:01:00.0
    vendor_id: str
    device_id: str
    vendor: str | None = None
    model: str | None = None
    kind: str  # VGA, 3D, display
    driver: str | None = None
    boot_vga: bool | None = None  # the firmware's console device
    numa_node: int | None = None


class GpusInfo(BaseModel):
    gpus: list[Gpu] = []


def pci_names(text: str, wanted: set[tuple[str, str]]) -> dict[tuple[str, str | None], str]:
    """(vendor, None) -> vendor name and (vendor, device) -> device name, for wanted ids."""
    vendors = {v for v, _ in wanted}
    names: dict[tuple[str, str | None], str] = {}
    vendor: str | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("C "):
            break  # the device class section: no more vendors
        if not line.startswith("\t"):
            vid, _, name = line.partition("  ")
            vendor = vid.lower() if vid.lower() in vendors else None
            if vendor:
                names[(vendor, None)] = name.strip()
        elif vendor and not line.startswith("\t\t"):
            did, _, name = line.strip().partition("  ")
            if (vendor, did.lower()) in wanted:
                names[(vendor, did.lower())] = name.strip()
    return names


def _names(target: TargetReader, wanted: set[tuple[str, str]]
           ) -> dict[tuple[str, str | None], str]:
    if not wanted:
        return {}
    for rel in PCI_IDS:
        text = target.read_text(rel, 16 << 20)
        if text:
            return pci_names(text, wanted)
    return {}


def collect(roots: SystemRoots) -> GpusInfo:
    base = roots.sys / "bus" / "pci" / "devices"
    found: list[tuple[str, int, str, str]] = []
    for slot in listdir(base):
        cls = read_attr(base / slot / "class")
        if not cls:
            continue
        value = int(cls, 16)
        if value >> 16 != DISPLAY_CLASS:
            continue
        vendor = (read_attr(base / slot / "vendor") or "0x0000").lower().removeprefix("0x")
        device = (read_attr(base / slot / "device") or "0x0000").lower().removeprefix("0x")
        found.append((slot, (value >> 8) & 0xFF, vendor, device))
    names = _names(target_reader(roots), {(v, d) for _, _, v, d in found})
    gpus = []
    for slot, sub, vendor, device in found:
        d = base / slot
        boot = read_attr(d / "boot_vga")
        numa = read_attr(d / "numa_node")
        gpus.append(Gpu(
            slot=slot, vendor_id=vendor, device_id=device,
            vendor=names.get((vendor, None)) or KNOWN_VENDORS.get(vendor),
            model=names.get((vendor, device)), kind=_SUBCLASSES.get(sub, "display"),
            driver=link_name(d / "driver"), boot_vga=None if boot is None else boot == "1",
            numa_node=int(numa) if numa and numa.lstrip("-").isdigit() and int(numa) >= 0
            else None))
    return GpusInfo(gpus=gpus)
