"""DIMMs from the raw SMBIOS table: a hand-built binary table read by us and, as a dump,
by dmidecode --from-dump; on this machine, compared with dmidecode -t 17 when the kernel
exports a table."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from oseprovd.discovery.collectors import memory
from oseprovd.discovery.redact import redact
from oseprovd.discovery.roots import SystemRoots
from oseprovd.discovery.smbios import MemoryDevice
from tests.harness.components import REPO_ROOT, require_root
from tests.unit.discovery.helpers import require_tool, run_tool, write

MIB = 1 << 20
UNITS = {"bytes": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
NONE = {"Not Specified", "Unknown", "No Module Installed", "None", "Not Provided"}


def _structure(kind: int, handle: int, body: bytes, strings: list[str]) -> bytes:
    head = struct.pack("<BBH", kind, 4 + len(body), handle) + body
    tail = b"".join(s.encode() + b"\0" for s in strings) + b"\0" if strings else b"\0\0"
    return head + tail


def _type17(handle: int, *, size: int, ext_size: int = 0, form: int = 0x09, mtype: int,
            speed: int, conf: int, strings: list[str], idx: tuple[int, ...],
            rank: int, ext_speed: int = 0, length: int = 0x5C) -> bytes:
    locator, bank, maker, serial, asset, part = idx
    body = bytearray(length - 4)

    def put(fmt: str, offset: int, value: int) -> None:
        if offset - 4 + struct.calcsize(fmt) <= len(body):
            struct.pack_into(fmt, body, offset - 4, value)

    put("<H", 0x04, 0x1000)
    put("<H", 0x06, 0xFFFE)
    put("<H", 0x08, 72)
    put("<H", 0x0A, 64)
    put("<H", 0x0C, size)
    for off, val in ((0x0E, form), (0x10, locator), (0x11, bank), (0x12, mtype),
                     (0x17, maker), (0x18, serial), (0x19, asset), (0x1A, part),
                     (0x1B, rank)):
        put("<B", off, val)
    put("<H", 0x13, 0x0080)
    put("<H", 0x15, speed)
    put("<I", 0x1C, ext_size)
    put("<H", 0x20, conf)
    for off in (0x22, 0x24, 0x26):
        put("<H", off, 1200)
    put("<B", 0x28, 3)
    put("<I", 0x54, ext_speed)
    put("<I", 0x58, ext_speed)
    return _structure(17, handle, bytes(body), strings)


def _table() -> bytes:
    array = _structure(16, 0x1000, struct.pack("<BBBIHH", 3, 3, 3, 0x80000000, 0xFFFE, 4)
                       + struct.pack("<Q", 0), [])
    return b"".join([
        array,
        _type17(0x1100, size=16384, mtype=0x1A, speed=3200, conf=2933, rank=2,
                strings=["DIMM A1", "BANK 0", "Samsung", "S3R1AL01", "A1-TAG",
                         "M393A2K43DB3-CWE"], idx=(1, 2, 3, 4, 5, 6)),
        # Size 0x7FFF: the real size (128 GiB) is in Extended Size; speed 0xFFFF: extended.
        _type17(0x1101, size=0x7FFF, ext_size=131072, mtype=0x22, speed=0xFFFF,
                ext_speed=70000, conf=0xFFFF, rank=4,
                strings=["DIMM B1", "Micron", "MC-SERIAL-9", "MTC40F2046S1RC48BA1"],
                idx=(1, 0, 2, 3, 0, 4)),
        _type17(0x1102, size=0, mtype=0x02, speed=0, conf=0, rank=0,
                strings=["DIMM C1"], idx=(1, 0, 0, 0, 0, 0)),
        # An SMBIOS 2.3-era structure (27 bytes): 512 KiB in KiB granularity, no rank.
        _type17(0x1103, size=0x8000 | 512, form=0x0D, mtype=0x12, speed=400, conf=0,
                rank=0, strings=["SODIMM0", "Hynix", "HX-1"], idx=(1, 0, 2, 3, 0, 0),
                length=0x1B),
        _structure(127, 0xFEFF, b"", []),
    ])


def _dump(table: bytes) -> bytes:
    """dmidecode --dump-bin's layout: an SMBIOS 3 entry point at 0, the table at 0x20."""
    ep = bytearray(b"_SM3_" + bytes(19))
    struct.pack_into("<BBBBBBBIQ", ep, 5, 0, 0x18, 3, 5, 0, 1, 0, len(table), 0x20)
    ep[5] = (-sum(ep)) & 0xFF
    return bytes(ep) + bytes(0x20 - len(ep)) + table


def _value(text: str) -> str | None:
    return None if text in NONE else text


def _number(text: str) -> int | None:
    value = _value(text)
    return int(value.split()[0]) if value else None


def dmidecode_devices(output: str) -> dict[int, dict[str, object]]:
    """handle -> our fields, from dmidecode -t 17 text."""
    devices: dict[int, dict[str, object]] = {}
    for block in output.split("\n\n"):
        lines = block.splitlines()
        head = next((i for i, line in enumerate(lines) if "DMI type 17," in line), None)
        if head is None:
            continue
        handle = int(lines[head].split(",")[0].split()[1], 16)
        kv = {k.strip(): v.strip() for k, _, v in
              (line.partition(":") for line in lines[head + 1:] if line.startswith("\t"))}
        size = kv.get("Size", "Unknown")
        size_bytes = None
        if _value(size):
            number, unit = size.split()
            size_bytes = int(number) * UNITS[unit]
        devices[handle] = {
            "locator": _value(kv.get("Locator", "")), "bank_locator": _value(
                kv.get("Bank Locator", "Not Specified")),
            "installed": size != "No Module Installed", "size_bytes": size_bytes,
            "form_factor": _value(kv.get("Form Factor", "")),
            "type": _value(kv.get("Type", "")),
            "speed_mts": _number(kv.get("Speed", "Unknown")),
            "configured_speed_mts": _number(kv.get("Configured Memory Speed", "Unknown")),
            "manufacturer": _value(kv.get("Manufacturer", "Not Specified")),
            "serial": _value(kv.get("Serial Number", "Not Specified")),
            "part_number": _value(kv.get("Part Number", "Not Specified")),
            "rank": _number(kv.get("Rank", "Unknown")),
        }
    return devices


def ours(devices: list[MemoryDevice]) -> dict[int, dict[str, object]]:
    return {d.handle: d.model_dump(exclude={"handle"}) for d in devices}


def test_hand_built_table_matches_dmidecode(sandbox: Path, tmp_path: Path) -> None:
    table = _table()
    (sandbox / "sys/firmware/dmi/tables").mkdir(parents=True)
    (sandbox / "sys/firmware/dmi/tables/DMI").write_bytes(table)
    info = memory.collect(SystemRoots.sandbox(sandbox))
    assert info.dimm_table == "read"
    dump = tmp_path / "dmi.bin"
    dump.write_bytes(_dump(table))
    truth = dmidecode_devices(run_tool("dmidecode", "--from-dump", str(dump), "-t", "17"))
    assert len(truth) == 4
    assert ours(info.dimms) == truth
    # Spot checks against the numbers written above, so dmidecode is not the only judge.
    by_handle = {d.handle: d for d in info.dimms}
    assert by_handle[0x1101].size_bytes == 128 << 30 and by_handle[0x1101].speed_mts == 70000
    assert by_handle[0x1103].size_bytes == 512 << 10 and by_handle[0x1103].rank is None
    assert not by_handle[0x1102].installed
    assert [d.serial for d in redact(info).dimms] == [None] * 4


def test_unreadable_and_absent_tables(sandbox: Path) -> None:
    assert memory.collect(SystemRoots.sandbox(sandbox)).dimm_table == "absent"
    path = write(sandbox, "sys/firmware/dmi/tables/DMI", "x", mode=0o000)
    if os.geteuid() != 0:  # root reads anything: the denied case needs another user
        info = memory.collect(SystemRoots.sandbox(sandbox))
        assert (info.dimm_table, info.dimms) == ("denied", [])
    path.write_bytes(b"\x11\x40\x00")  # truncated: no structure, no exception
    assert memory.collect(SystemRoots.sandbox(sandbox)).dimms == []


def test_a_table_only_root_may_read_is_denied() -> None:
    """As the kernel's is (0400 root): another user gets 'denied', not 'absent'."""
    require_root("switches to user nobody to read a root-only table")
    setpriv = require_tool("setpriv")
    base = Path(tempfile.mkdtemp(prefix="ose-dimm-"))
    try:
        base.chmod(0o755)
        for sub in ("proc", "sys/firmware/dmi/tables"):
            (base / sub).mkdir(parents=True)
        table = base / "sys/firmware/dmi/tables/DMI"
        table.write_bytes(_table())
        table.chmod(0o400)
        code = ("import sys; from pathlib import Path; "
                "from oseprovd.discovery.collectors.memory import dimms; "
                "from oseprovd.discovery.roots import SystemRoots; "
                "state, found = dimms(SystemRoots.sandbox(Path(sys.argv[1]))); "
                "print(state, len(found))")
        done = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
             "-c", code, str(base)], capture_output=True, text=True, timeout=30,
            cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["denied", "0"]
        assert memory.dimms(SystemRoots.sandbox(base))[0] == "read"  # root reads it
    finally:
        shutil.rmtree(base)


def test_this_machine_matches_dmidecode() -> None:
    info = memory.collect(SystemRoots())
    if not Path("/sys/firmware/dmi/tables/DMI").exists():
        assert (info.dimm_table, info.dimms) == ("absent", [])  # this VM exports no table
        return
    if os.geteuid() != 0:
        assert info.dimm_table == "denied"
        return
    truth = dmidecode_devices(run_tool("dmidecode", "-t", "17"))
    assert ours(info.dimms) == truth
