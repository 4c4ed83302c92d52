"""Memory devices (SMBIOS type 17) from the raw table /sys/firmware/dmi/tables/DMI.

The kernel exports the table as firmware wrote it; only root can read it (it holds
serial numbers). Layout per the DMTF SMBIOS 3.x specification, section 7.18: each
structure is a header (type, length, handle), `length` bytes of fields, then its strings,
NUL-separated and ended by an empty string. A field the structure is too short for (an
older SMBIOS version) is unknown.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from oseprovd.discovery.collectors.dmi import clean
from oseprovd.discovery.redact import sensitive

MAX_TABLE = 1 << 20  # SMBIOS 3 allows up to 4 GiB; real tables are a few KiB
MIB = 1 << 20
KIB = 1 << 10

# 0x02 "Unknown" is left out: an unknown value is None.
MEMORY_TYPES = {
    0x01: "Other", 0x03: "DRAM", 0x04: "EDRAM", 0x05: "VRAM", 0x06: "SRAM",
    0x07: "RAM", 0x08: "ROM", 0x09: "Flash", 0x0A: "EEPROM", 0x0B: "FEPROM", 0x0C: "EPROM",
    0x0D: "CDRAM", 0x0E: "3DRAM", 0x0F: "SDRAM", 0x10: "SGRAM", 0x11: "RDRAM", 0x12: "DDR",
    0x13: "DDR2", 0x14: "DDR2 FB-DIMM", 0x18: "DDR3", 0x19: "FBD2", 0x1A: "DDR4",
    0x1B: "LPDDR", 0x1C: "LPDDR2", 0x1D: "LPDDR3", 0x1E: "LPDDR4",
    0x1F: "Logical non-volatile device", 0x20: "HBM", 0x21: "HBM2", 0x22: "DDR5",
    0x23: "LPDDR5", 0x24: "HBM3",
}
FORM_FACTORS = {
    0x01: "Other", 0x03: "SIMM", 0x04: "SIP", 0x05: "Chip", 0x06: "DIP",
    0x07: "ZIP", 0x08: "Proprietary Card", 0x09: "DIMM", 0x0A: "TSOP", 0x0B: "Row Of Chips",
    0x0C: "RIMM", 0x0D: "SODIMM", 0x0E: "SRIMM", 0x0F: "FB-DIMM", 0x10: "Die", 0x11: "CAMM",
}

TableState = Literal["read", "absent", "denied"]


class MemoryDevice(BaseModel):
    handle: int
    locator: str | None = None  # the slot: "DIMM 0", "ChannelA-DIMM1"
    bank_locator: str | None = None
    installed: bool = True  # False: an empty slot
    size_bytes: int | None = None  # None: unknown (or empty slot)
    form_factor: str | None = None
    type: str | None = None  # DDR4, DDR5, ...
    speed_mts: int | None = None  # maximum speed, MT/s
    configured_speed_mts: int | None = None
    manufacturer: str | None = None
    serial: str | None = sensitive()
    part_number: str | None = None
    rank: int | None = None


@dataclass(frozen=True)
class Structure:
    type: int
    handle: int
    data: bytes  # the formatted area, header included
    strings: list[str]

    def byte(self, offset: int) -> int | None:
        return self.data[offset] if offset < len(self.data) else None

    def word(self, offset: int) -> int | None:
        if offset + 2 > len(self.data):
            return None
        return int(struct.unpack_from("<H", self.data, offset)[0])

    def dword(self, offset: int) -> int | None:
        if offset + 4 > len(self.data):
            return None
        return int(struct.unpack_from("<I", self.data, offset)[0])

    def string(self, offset: int) -> str | None:
        index = self.byte(offset)
        if not index or index > len(self.strings):
            return None
        return self.strings[index - 1]


def structures(table: bytes) -> Iterator[Structure]:
    """The structures of a raw table, up to the end-of-table marker (type 127)."""
    pos = 0
    while pos + 4 <= len(table):
        kind, length, handle = struct.unpack_from("<BBH", table, pos)
        if length < 4 or pos + length > len(table):
            return  # corrupt: stop rather than guess
        end = table.find(b"\0\0", pos + length)
        if end < 0:
            return
        raw = table[pos + length:end]
        strings = [s.decode("latin-1").strip() for s in raw.split(b"\0")] if raw else []
        yield Structure(kind, handle, table[pos:pos + length], strings)
        if kind == 127:
            return
        pos = end + 2


def _size(s: Structure) -> tuple[bool, int | None]:
    """(installed, bytes) from the Size word, or the Extended Size when it says 0x7FFF."""
    size = s.word(0x0C)
    if size is None or size == 0xFFFF:
        return True, None
    if size == 0:
        return False, None
    if size == 0x7FFF:
        ext = s.dword(0x1C)
        return True, (ext & 0x7FFFFFFF) * MIB if ext is not None else None
    return True, (size & 0x7FFF) * (KIB if size & 0x8000 else MIB)


def _speed(s: Structure, offset: int, extended: int) -> int | None:
    speed = s.word(offset)
    if speed == 0xFFFF:
        ext = s.dword(extended)
        return ext & 0x7FFFFFFF if ext else None
    return speed or None


def memory_device(s: Structure) -> MemoryDevice:
    installed, size = _size(s)
    attributes = s.byte(0x1B)
    return MemoryDevice(
        handle=s.handle, locator=s.string(0x10), bank_locator=s.string(0x11),
        installed=installed, size_bytes=size,
        form_factor=FORM_FACTORS.get(s.byte(0x0E) or 0),
        type=MEMORY_TYPES.get(s.byte(0x12) or 0),
        speed_mts=_speed(s, 0x15, 0x54),
        configured_speed_mts=_speed(s, 0x20, 0x58),
        manufacturer=clean(s.string(0x17)) if installed else None,
        serial=clean(s.string(0x18)) if installed else None,
        part_number=clean(s.string(0x1A)) if installed else None,
        rank=(attributes & 0x0F) or None if attributes is not None else None,
    )


def memory_devices(table: bytes) -> list[MemoryDevice]:
    return [memory_device(s) for s in structures(table) if s.type == 17 and len(s.data) >= 0x15]
