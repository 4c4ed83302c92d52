"""Hardware collectors on this machine, compared with the kernel and independent tools."""

from __future__ import annotations

import json
import os
import socket

from oseprovd.discovery.collectors import block, cpu, memory, mounts, nics, virt
from oseprovd.discovery.roots import SystemRoots
from tests.unit.discovery.helpers import run_tool, steady

LIVE = SystemRoots()


def test_cpu_count_matches_kernel() -> None:
    info = cpu.collect(LIVE)
    assert info.logical_cpus == os.cpu_count()
    with open("/sys/devices/system/cpu/online") as f:
        text = f.read().strip()
    expected: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        expected.update(range(int(lo), int(hi or lo) + 1))
    assert set(info.online) == expected


def test_cpu_topology_matches_lscpu() -> None:
    rows = [line.split(",") for line in run_tool("lscpu", "-p=CPU,CORE,SOCKET").splitlines()
            if not line.startswith("#")]
    info = cpu.collect(LIVE)
    assert info.sockets == len({r[2] for r in rows})
    assert info.cores == len({(r[2], r[1]) for r in rows})
    fields = {e["field"].rstrip(":"): e["data"]
              for e in json.loads(run_tool("lscpu", "-J"))["lscpu"]}
    assert info.model_name == fields["Model name"]
    if "Vendor ID" in fields:
        assert info.vendor == fields["Vendor ID"]
    assert info.architecture == os.uname().machine


def test_cpu_flags_match_cpuinfo_and_caches_are_sane() -> None:
    info = cpu.collect(LIVE)
    with open("/proc/cpuinfo") as f:
        line = next((x for x in f if x.startswith(("flags", "Features"))), "")
    assert set(info.flags) == set(line.partition(":")[2].split())
    for cache in info.caches:
        assert cache.level in (1, 2, 3, 4)
        assert cache.size_kib is None or cache.size_kib > 0


def test_memory_total_matches_kernel() -> None:
    info = memory.collect(LIVE)
    page = os.sysconf("SC_PAGE_SIZE")
    phys = os.sysconf("SC_PHYS_PAGES") * page
    # meminfo is in kB, sysinfo in pages: equal within one page.
    assert abs(info.total_bytes - phys) < page
    free = run_tool("free", "-b").splitlines()
    swap = next(line for line in free if line.startswith("Swap:")).split()
    assert info.swap_total_bytes == int(swap[1])


def test_block_devices_match_sys_block_and_lsblk() -> None:
    def truth() -> tuple[set[str], str]:
        return set(os.listdir("/sys/block")), run_tool("lsblk", "-J", "-b", "-d", "-o",
                                                      "NAME,SIZE,ROTA,SCHED")

    (names, lsblk), info = steady(truth, lambda: block.collect(LIVE))
    assert {d.name for d in info.devices} == names
    listed = json.loads(lsblk)
    by_name = {d.name: d for d in info.devices}
    assert listed["blockdevices"], "lsblk listed nothing to compare with"
    for entry in listed["blockdevices"]:
        dev = by_name[entry["name"]]
        assert dev.size_bytes == int(entry["size"])
        assert dev.rotational == entry["rota"]
        assert dev.scheduler == entry["sched"]


def test_mounts_match_findmnt() -> None:
    out, info = steady(lambda: run_tool("findmnt", "-J", "-l", "-o", "TARGET,FSTYPE"),
                       lambda: mounts.collect(LIVE))
    listed = json.loads(out)
    assert {(m.mountpoint, m.fstype) for m in info.mounts} == {
        (e["target"], e["fstype"]) for e in listed["filesystems"]}


def test_root_filesystem_is_on_a_listed_device() -> None:
    dev = os.stat("/").st_dev
    devnum = f"{os.major(dev)}:{os.minor(dev)}"
    info = mounts.collect(LIVE)
    assert any(m.mountpoint == "/" and m.device == devnum for m in info.mounts)


def test_interfaces_match_kernel_and_ip() -> None:
    def truth() -> tuple[set[tuple[str, int]], str]:
        return ({(name, index) for index, name in socket.if_nameindex()},
                run_tool("ip", "-j", "link", "show"))

    (pairs, ip_json), info = steady(truth, lambda: nics.collect(LIVE))
    assert {(i.name, i.ifindex) for i in info.interfaces} == pairs
    links = {x["ifname"]: x for x in json.loads(ip_json)}
    for iface in info.interfaces:
        assert iface.mtu == links[iface.name]["mtu"]
        assert iface.mac == links[iface.name].get("address")
    assert next(i for i in info.interfaces if i.name == "lo").kind == "loopback"


def test_container_detection_agrees_with_systemd_detect_virt() -> None:
    # It exits 1 and prints "none" when it finds nothing.
    out = run_tool("systemd-detect-virt", "--container", check=False).strip()
    info = virt.collect(LIVE)
    assert info.container == (None if out == "none" else out)
