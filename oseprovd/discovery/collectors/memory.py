"""Memory and swap from /proc/meminfo and /proc/swaps; the DIMMs from the raw SMBIOS
table when it can be read (root only)."""

from __future__ import annotations

from pydantic import BaseModel

from oseprovd.discovery import smbios
from oseprovd.discovery.fsread import read_bytes, read_text, unescape_mount_field
from oseprovd.discovery.roots import SystemRoots
from oseprovd.discovery.smbios import MemoryDevice, TableState


class SwapArea(BaseModel):
    path: str
    type: str  # partition, file
    size_bytes: int
    used_bytes: int
    priority: int


class MemoryInfo(BaseModel):
    total_bytes: int = 0
    available_bytes: int | None = None
    free_bytes: int | None = None
    buffers_bytes: int | None = None
    cached_bytes: int | None = None
    hugepages_total: int | None = None
    hugepage_size_bytes: int | None = None
    swap_total_bytes: int = 0
    swap_free_bytes: int = 0
    swap_areas: list[SwapArea] = []
    # DMI memory devices (slots, empty ones included); dimm_table says whether the raw
    # table was read, is absent (containers, some VMs), or needs root.
    dimms: list[MemoryDevice] = []
    dimm_table: TableState = "absent"


def parse_meminfo(text: str) -> dict[str, int]:
    """'MemTotal:  16314972 kB' -> {'MemTotal': 16706531328}; unitless values stay."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts:
            continue
        try:
            number = int(parts[0])
        except ValueError:
            continue
        values[key.strip()] = number * 1024 if parts[1:2] == ["kB"] else number
    return values


def parse_swaps(text: str) -> list[SwapArea]:
    areas: list[SwapArea] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        areas.append(SwapArea(path=unescape_mount_field(fields[0]), type=fields[1],
                              size_bytes=int(fields[2]) * 1024,
                              used_bytes=int(fields[3]) * 1024, priority=int(fields[4])))
    return areas


def dimms(roots: SystemRoots) -> tuple[TableState, list[MemoryDevice]]:
    path = roots.sys / "firmware" / "dmi" / "tables" / "DMI"
    table = read_bytes(path, smbios.MAX_TABLE)
    if table is None:
        return ("denied" if path.exists() else "absent"), []
    return "read", smbios.memory_devices(table)


def collect(roots: SystemRoots) -> MemoryInfo:
    info = parse_meminfo(read_text(roots.proc / "meminfo") or "")
    table_state, devices = dimms(roots)
    return MemoryInfo(
        total_bytes=info.get("MemTotal", 0),
        available_bytes=info.get("MemAvailable"),
        free_bytes=info.get("MemFree"),
        buffers_bytes=info.get("Buffers"),
        cached_bytes=info.get("Cached"),
        hugepages_total=info.get("HugePages_Total"),
        hugepage_size_bytes=info.get("Hugepagesize"),
        swap_total_bytes=info.get("SwapTotal", 0),
        swap_free_bytes=info.get("SwapFree", 0),
        swap_areas=parse_swaps(read_text(roots.proc / "swaps") or ""),
        dimms=devices, dimm_table=table_state,
    )
