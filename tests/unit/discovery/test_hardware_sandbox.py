"""Hardware collectors on sandbox /sys and /proc trees with known answers."""

from __future__ import annotations

import os
from pathlib import Path

from oseprovd.discovery.collectors import block, cpu, gpus, memory, nics, power
from oseprovd.discovery.roots import SystemRoots
from tests.unit.discovery.helpers import symlink, write

PCI = "devices/pci0000:00"


def add_disk(base: Path, devpath: str, name: str, sectors: int, rotational: int,
             devnum: str, model: str, serial: str, parts: tuple[tuple[str, str, int], ...] = ()
             ) -> None:
    """sys/<devpath>/block/<name> with a 'device' link, attributes and partitions."""
    disk = f"sys/{devpath}/block/{name}"
    write(base, f"{disk}/size", f"{sectors}\n")
    write(base, f"{disk}/dev", f"{devnum}\n")
    write(base, f"{disk}/removable", "0\n")
    write(base, f"{disk}/ro", "0\n")
    write(base, f"{disk}/queue/rotational", f"{rotational}\n")
    write(base, f"{disk}/queue/scheduler", "none [mq-deadline] kyber bfq\n")
    write(base, f"sys/{devpath}/model", f"{model}\n")
    write(base, f"sys/{devpath}/serial", f"{serial}\n")
    symlink(base, f"{disk}/device", "../..")
    (base / disk / "holders").mkdir()
    for pname, pdev, psectors in parts:
        write(base, f"{disk}/{pname}/partition", pname[-1] + "\n")
        write(base, f"{disk}/{pname}/size", f"{psectors}\n")
        write(base, f"{disk}/{pname}/start", "2048\n")
        write(base, f"{disk}/{pname}/dev", f"{pdev}\n")
    rel = os.path.relpath(base / disk, base / "sys/block")
    symlink(base, f"sys/block/{name}", rel)


def test_block_transports_sizes_partitions_and_mounts(sandbox: Path) -> None:
    add_disk(sandbox, f"{PCI}/0000:00:1d.0/nvme/nvme0/nvme0n1", "nvme0n1", 1000215216, 0,
             "259:0", "Samsung SSD 980 PRO 1TB", "S5GXNF0R123456",
             (("nvme0n1p1", "259:1", 1048576), ("nvme0n1p2", "259:2", 999164592)))
    add_disk(sandbox, f"{PCI}/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0", "sda", 7814037168,
             1, "8:0", "ST4000DM004-2CV1", "ZFN0ABCD")
    add_disk(sandbox, f"{PCI}/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0", "sdb",
             60062500, 0, "8:16", "Ultra Fit", "4C530001230101112345")
    add_disk(sandbox, f"{PCI}/0000:00:04.0/virtio1", "vda", 41943040, 1, "254:0", "", "")
    write(sandbox, "proc/self/mountinfo",
          "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro\n"
          "23 22 259:1 / /boot/efi rw,relatime shared:2 - vfat /dev/nvme0n1p1 rw,fmask=0077\n")
    info = block.collect(SystemRoots.sandbox(sandbox))
    devs = {d.name: d for d in info.devices}
    assert {n: d.transport for n, d in devs.items()} == {
        "nvme0n1": "nvme", "sda": "sata", "sdb": "usb", "vda": "virtio"}
    nvme = devs["nvme0n1"]
    assert nvme.size_bytes == 1000215216 * 512
    assert nvme.rotational is False and devs["sda"].rotational is True
    assert nvme.model == "Samsung SSD 980 PRO 1TB" and nvme.serial == "S5GXNF0R123456"
    assert (nvme.scheduler, nvme.schedulers) == ("mq-deadline",
                                                ["none", "mq-deadline", "kyber", "bfq"])
    parts = {p.name: p for p in nvme.partitions}
    assert set(parts) == {"nvme0n1p1", "nvme0n1p2"}
    assert [(m.mountpoint, m.fstype) for m in parts["nvme0n1p2"].mounts] == [("/", "ext4")]
    assert [(m.mountpoint, m.fstype) for m in parts["nvme0n1p1"].mounts] == [
        ("/boot/efi", "vfat")]
    assert parts["nvme0n1p1"].size_bytes == 1048576 * 512


def test_cpu_two_sockets_with_smt(sandbox: Path) -> None:
    cpuinfo = []
    base = "sys/devices/system/cpu"
    for n in range(8):
        sock, core = n // 4, (n % 4) // 2
        cpuinfo.append(f"processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n"
                       f"model\t\t: 85\nmodel name\t: Intel(R) Xeon(R) Gold 6230\n"
                       f"physical id\t: {sock}\ncore id\t\t: {core}\n"
                       f"flags\t\t: fpu sse2 avx512f ht\n\n")
        write(sandbox, f"{base}/cpu{n}/topology/physical_package_id", f"{sock}\n")
        write(sandbox, f"{base}/cpu{n}/topology/core_id", f"{core}\n")
        write(sandbox, f"{base}/cpu{n}/cache/index0/level", "1\n")
        write(sandbox, f"{base}/cpu{n}/cache/index0/type", "Data\n")
        write(sandbox, f"{base}/cpu{n}/cache/index0/size", "32K\n")
        write(sandbox, f"{base}/cpu{n}/cache/index0/shared_cpu_list", f"{n - n % 2}-{n | 1}\n")
        write(sandbox, f"{base}/cpu{n}/cache/index3/level", "3\n")
        write(sandbox, f"{base}/cpu{n}/cache/index3/type", "Unified\n")
        write(sandbox, f"{base}/cpu{n}/cache/index3/size", "28160K\n")
        write(sandbox, f"{base}/cpu{n}/cache/index3/shared_cpu_list",
              f"{sock * 4}-{sock * 4 + 3}\n")
    write(sandbox, f"{base}/cpu0/cpufreq/cpuinfo_min_freq", "1000000\n")
    write(sandbox, f"{base}/cpu0/cpufreq/cpuinfo_max_freq", "3900000\n")
    write(sandbox, f"{base}/online", "0-7\n")
    write(sandbox, "sys/devices/system/node/online", "0-1\n")
    write(sandbox, "sys/devices/system/node/node0/cpulist", "0-3\n")
    write(sandbox, "sys/devices/system/node/node1/cpulist", "4-7\n")
    write(sandbox, "sys/devices/system/node/node0/meminfo", "Node 0 MemTotal:  1024 kB\n")
    write(sandbox, "proc/cpuinfo", "".join(cpuinfo))
    info = cpu.collect(SystemRoots.sandbox(sandbox))
    assert (info.logical_cpus, info.sockets, info.cores, info.threads_per_core) == (8, 2, 4, 2)
    assert (info.min_mhz, info.max_mhz) == (1000.0, 3900.0)
    assert info.vendor == "GenuineIntel" and info.family == 6 and info.model == 85
    assert info.flags == ["avx512f", "fpu", "ht", "sse2"] and not info.hypervisor_flag
    caches = {(c.level, c.type): (c.size_kib, c.instances) for c in info.caches}
    assert caches == {(1, "Data"): (32, 4), (3, "Unified"): (28160, 2)}
    assert [(n.node, n.cpus) for n in info.numa_nodes] == [(0, [0, 1, 2, 3]),
                                                          (1, [4, 5, 6, 7])]
    assert info.numa_nodes[0].memory_bytes == 1024 * 1024


def test_memory_and_swap(sandbox: Path) -> None:
    write(sandbox, "proc/meminfo", "MemTotal:       16314972 kB\nMemAvailable:   9000000 kB\n"
          "SwapTotal:       2097148 kB\nSwapFree:        2097148 kB\nHugePages_Total:       0\n")
    write(sandbox, "proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n"
          "/swap\\040file\tfile\t2097148\t0\t-2\n")
    info = memory.collect(SystemRoots.sandbox(sandbox))
    assert info.total_bytes == 16314972 * 1024 and info.hugepages_total == 0
    assert [(s.path, s.size_bytes) for s in info.swap_areas] == [("/swap file", 2097148 * 1024)]


def test_nics_bridge_member_and_driver(sandbox: Path) -> None:
    eth = f"sys/{PCI}/0000:00:1f.6/net/eno1"
    write(sandbox, f"{eth}/address", "3c:ec:ef:01:02:03\n")
    write(sandbox, f"{eth}/ifindex", "2\n")
    write(sandbox, f"{eth}/type", "1\n")
    write(sandbox, f"{eth}/speed", "1000\n")
    write(sandbox, f"{eth}/operstate", "up\n")
    write(sandbox, f"sys/{PCI}/0000:00:1f.6/vendor", "0x8086\n")
    (sandbox / "sys/bus/pci/drivers/e1000e").mkdir(parents=True)
    symlink(sandbox, f"sys/{PCI}/0000:00:1f.6/driver", "../../../bus/pci/drivers/e1000e")
    symlink(sandbox, f"{eth}/device", "../../../0000:00:1f.6")
    symlink(sandbox, f"{eth}/master", "../../../../virtual/net/br0")
    write(sandbox, "sys/devices/virtual/net/br0/bridge/stp_state", "0\n")
    write(sandbox, "sys/devices/virtual/net/br0/type", "1\n")
    symlink(sandbox, "sys/class/net/eno1", f"../../{eth.removeprefix('sys/')}")
    symlink(sandbox, "sys/class/net/br0", "../../devices/virtual/net/br0")
    info = nics.collect(SystemRoots.sandbox(sandbox))
    by = {i.name: i for i in info.interfaces}
    assert by["eno1"].driver == "e1000e" and by["eno1"].physical
    assert by["eno1"].speed_mbps == 1000 and by["eno1"].master == "br0"
    assert by["br0"].kind == "bridge" and not by["br0"].physical
    assert by["eno1"].mac == "3c:ec:ef:01:02:03"


def test_laptop_battery(sandbox: Path) -> None:
    bat = "sys/class/power_supply/BAT0"
    for name, value in {"type": "Battery", "status": "Discharging", "capacity": "81",
                        "energy_full": "45000000", "energy_full_design": "50000000",
                        "serial_number": "12345", "technology": "Li-ion"}.items():
        write(sandbox, f"{bat}/{name}", value + "\n")
    write(sandbox, "sys/class/power_supply/AC/type", "Mains\n")
    write(sandbox, "sys/class/power_supply/AC/online", "0\n")
    info = power.collect(SystemRoots.sandbox(sandbox))
    b = next(s for s in info.supplies if s.name == "BAT0")
    assert (b.capacity_percent, b.health_percent, b.serial_number) == (81, 90.0, "12345")
    assert info.on_battery is True


PCI_IDS_SAMPLE = """\
# sample of pci.ids
10de  NVIDIA Corporation
\t2204  GA102 [GeForce RTX 3090]
\t\t1462 3880  GeForce RTX 3090 Gaming X Trio
1a03  ASPEED Technology, Inc.
\t2000  ASPEED Graphics Family
8086  Intel Corporation
C 03  Display controller
\t00  VGA compatible controller
"""


def _pci(base: Path, slot: str, cls: str, vendor: str, device: str, driver: str | None,
         boot_vga: str | None = None) -> None:
    d = f"sys/devices/pci0000:00/{slot}"
    write(base, f"{d}/class", cls + "\n")
    write(base, f"{d}/vendor", vendor + "\n")
    write(base, f"{d}/device", device + "\n")
    write(base, f"{d}/numa_node", "-1\n")
    if boot_vga is not None:
        write(base, f"{d}/boot_vga", boot_vga + "\n")
    if driver:
        (base / f"sys/bus/pci/drivers/{driver}").mkdir(parents=True, exist_ok=True)
        symlink(base, f"{d}/driver", f"../../../bus/pci/drivers/{driver}")
    symlink(base, f"sys/bus/pci/devices/{slot}", f"../../../devices/pci0000:00/{slot}")


def test_gpus_from_pci_display_class(sandbox: Path) -> None:
    _pci(sandbox, "0000:01:00.0", "0x030000", "0x10de", "0x2204", "nvidia", "0")
    _pci(sandbox, "0000:03:00.0", "0x030000", "0x1a03", "0x2000", "ast", "1")
    _pci(sandbox, "0000:04:00.0", "0x030200", "0x10de", "0x20b0", None)
    _pci(sandbox, "0000:00:1f.6", "0x020000", "0x8086", "0x15bb", "e1000e")
    write(sandbox, "usr/share/misc/pci.ids", PCI_IDS_SAMPLE)
    info = gpus.collect(SystemRoots.sandbox(sandbox))
    by = {g.slot: g for g in info.gpus}
    assert set(by) == {"0000:01:00.0", "0000:03:00.0", "0000:04:00.0"}
    rtx = by["0000:01:00.0"]
    assert (rtx.vendor, rtx.model, rtx.driver, rtx.kind, rtx.boot_vga) == (
        "NVIDIA Corporation", "GA102 [GeForce RTX 3090]", "nvidia", "VGA", False)
    assert by["0000:03:00.0"].boot_vga is True and by["0000:03:00.0"].driver == "ast"
    a100 = by["0000:04:00.0"]
    assert (a100.kind, a100.model, a100.driver, a100.numa_node) == ("3D", None, None, None)
