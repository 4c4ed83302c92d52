"""Performance profile: sample CPU, memory, disks, network, pressure and processes over
a few seconds, and say what is saturated. A job, not a scan collector (it takes time).

Each sample is a snapshot of kernel counters; rates come from the difference between
the first and last snapshot, averages and peaks from consecutive pairs.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from oseprovd import errors
from oseprovd.discovery.fsread import listdir, read_text
from oseprovd.discovery.roots import SystemRoots

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SECTOR = 512
MAX_SECONDS = 300.0
SATURATED_PCT = 90.0
PRESSURE_LIMIT = 20.0  # % of time some task stalled (avg10)


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, list[int]]  # 'cpu', 'cpu0', ... -> jiffies columns of /proc/stat
    mem_total: int
    mem_available: int
    swap_used: int
    disks: dict[str, tuple[int, int, int]]  # name -> (sectors read, written, io ms)
    net: dict[str, tuple[int, int]]  # iface -> (rx bytes, tx bytes)
    procs: dict[int, tuple[str, int, int]]  # pid -> (comm, utime+stime ticks, rss pages)
    pressure: dict[str, float] = field(default_factory=dict)  # 'cpu.some' -> avg10


class CpuUsage(BaseModel):
    busy_pct_avg: float
    busy_pct_max: float
    iowait_pct: float
    steal_pct: float
    per_cpu_busy_pct: dict[str, float]


class MemoryUsage(BaseModel):
    used_pct_avg: float
    used_pct_max: float
    swap_used_max_bytes: int


class DiskUsage(BaseModel):
    name: str
    read_bytes_per_s: float
    write_bytes_per_s: float
    util_pct: float


class NetUsage(BaseModel):
    name: str
    rx_bytes_per_s: float
    tx_bytes_per_s: float


class ProcessUsage(BaseModel):
    pid: int
    comm: str
    cpu_pct: float  # of one CPU
    rss_bytes: int


class PerformanceProfile(BaseModel):
    duration_s: float
    samples: int
    cpu: CpuUsage
    memory: MemoryUsage
    disks: list[DiskUsage]
    network: list[NetUsage]
    pressure: dict[str, float]  # 'cpu.some', 'io.full', ... avg10 at the end
    top_processes: list[ProcessUsage]
    saturated: list[str]  # e.g. 'cpu', 'memory', 'disk vda', 'io pressure'


def _cpu(roots: SystemRoots) -> dict[str, list[int]]:
    result = {}
    for line in (read_text(roots.proc / "stat") or "").splitlines():
        if line.startswith("cpu"):
            name, *values = line.split()
            result[name] = [int(v) for v in values]
    return result


def _meminfo(roots: SystemRoots) -> tuple[int, int, int]:
    values: dict[str, int] = {}
    for line in (read_text(roots.proc / "meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            values[key] = int(words[0]) * 1024
    total = values.get("MemTotal", 0)
    return (total, values.get("MemAvailable", values.get("MemFree", 0)),
            values.get("SwapTotal", 0) - values.get("SwapFree", 0))


def _disks(roots: SystemRoots) -> dict[str, tuple[int, int, int]]:
    whole = set(listdir(roots.sys / "block"))
    result = {}
    for line in (read_text(roots.proc / "diskstats") or "").splitlines():
        f = line.split()
        if len(f) >= 13 and f[2] in whole:
            result[f[2]] = (int(f[5]), int(f[9]), int(f[12]))
    return result


def _net(roots: SystemRoots) -> dict[str, tuple[int, int]]:
    result = {}
    for line in (read_text(roots.proc / "net" / "dev") or "").splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        if len(f) >= 9:
            result[name.strip()] = (int(f[0]), int(f[8]))
    return result


def _procs(roots: SystemRoots) -> dict[int, tuple[str, int, int]]:
    result = {}
    for entry in listdir(roots.proc):
        if not entry.isdigit():
            continue
        text = read_text(roots.proc / entry / "stat", 4096)
        if not text or ")" not in text:
            continue
        # comm may contain spaces and parentheses: it ends at the last ')'.
        comm = text[text.index("(") + 1:text.rindex(")")]
        f = text[text.rindex(")") + 2:].split()
        if len(f) > 21:
            result[int(entry)] = (comm, int(f[11]) + int(f[12]), int(f[21]))
    return result


def _pressure(roots: SystemRoots) -> dict[str, float]:
    result = {}
    for resource in ("cpu", "memory", "io"):
        for line in (read_text(roots.proc / "pressure" / resource) or "").splitlines():
            kind, *fields = line.split()
            for item in fields:
                if item.startswith("avg10="):
                    result[f"{resource}.{kind}"] = float(item[6:])
    return result


def snapshot(roots: SystemRoots) -> Snapshot:
    total, available, swap = _meminfo(roots)
    return Snapshot(at=time.monotonic(), cpu=_cpu(roots), mem_total=total,
                    mem_available=available, swap_used=swap, disks=_disks(roots),
                    net=_net(roots), procs=_procs(roots), pressure=_pressure(roots))


def _busy(a: list[int], b: list[int]) -> tuple[float, float, float]:
    """(busy %, iowait %, steal %) between two /proc/stat rows."""
    delta = [y - x for x, y in zip(a, b, strict=False)]
    total = sum(delta[:8]) or 1
    idle = delta[3] + (delta[4] if len(delta) > 4 else 0)
    iowait = delta[4] if len(delta) > 4 else 0
    steal = delta[7] if len(delta) > 7 else 0
    return 100 * (total - idle) / total, 100 * iowait / total, 100 * steal / total


def _r(value: float) -> float:
    return round(value, 2)


def summarize(snaps: list[Snapshot], top: int = 10) -> PerformanceProfile:
    """The profile of at least two snapshots (pure: tests feed synthetic ones)."""
    if len(snaps) < 2:
        raise errors.InvalidArguments("a profile needs at least two samples")
    first, last = snaps[0], snaps[-1]
    elapsed = max(last.at - first.at, 1e-6)
    pairs = list(itertools.pairwise(snaps))
    busy = [_busy(a.cpu["cpu"], b.cpu["cpu"])[0] for a, b in pairs]
    _, iowait, steal = _busy(first.cpu["cpu"], last.cpu["cpu"])
    per_cpu = {n: _r(_busy(first.cpu[n], last.cpu[n])[0]) for n in last.cpu
               if n != "cpu" and n in first.cpu}
    used = [100 * (1 - s.mem_available / s.mem_total) if s.mem_total else 0.0 for s in snaps]
    disks = [DiskUsage(name=n,
                       read_bytes_per_s=_r((d[0] - first.disks[n][0]) * SECTOR / elapsed),
                       write_bytes_per_s=_r((d[1] - first.disks[n][1]) * SECTOR / elapsed),
                       util_pct=_r(min(100.0, (d[2] - first.disks[n][2]) / (elapsed * 10))))
             for n, d in sorted(last.disks.items()) if n in first.disks]
    net = [NetUsage(name=n, rx_bytes_per_s=_r((v[0] - first.net[n][0]) / elapsed),
                    tx_bytes_per_s=_r((v[1] - first.net[n][1]) / elapsed))
           for n, v in sorted(last.net.items()) if n in first.net]
    procs = [ProcessUsage(pid=pid, comm=comm,
                          cpu_pct=_r(100 * (ticks - first.procs[pid][1]) / CLK_TCK / elapsed),
                          rss_bytes=rss * PAGE)
             for pid, (comm, ticks, rss) in last.procs.items() if pid in first.procs]
    procs.sort(key=lambda p: (-p.cpu_pct, -p.rss_bytes, p.pid))
    cpu = CpuUsage(busy_pct_avg=_r(sum(busy) / len(busy)), busy_pct_max=_r(max(busy)),
                   iowait_pct=_r(iowait), steal_pct=_r(steal), per_cpu_busy_pct=per_cpu)
    memory = MemoryUsage(used_pct_avg=_r(sum(used) / len(used)), used_pct_max=_r(max(used)),
                         swap_used_max_bytes=max(s.swap_used for s in snaps))
    saturated = ["cpu"] if cpu.busy_pct_avg >= SATURATED_PCT else []
    saturated += ["memory"] if memory.used_pct_avg >= SATURATED_PCT else []
    saturated += [f"disk {d.name}" for d in disks if d.util_pct >= SATURATED_PCT]
    saturated += [f"{k.split('.')[0]} pressure" for k, v in sorted(last.pressure.items())
                  if k.endswith(".some") and v >= PRESSURE_LIMIT]
    return PerformanceProfile(duration_s=_r(elapsed), samples=len(snaps), cpu=cpu,
                              memory=memory, disks=disks, network=net,
                              pressure=last.pressure, top_processes=procs[:top],
                              saturated=saturated)


async def profile(roots: SystemRoots, seconds: float, interval: float = 1.0, top: int = 10,
                  progress: Callable[[float], None] | None = None) -> PerformanceProfile:
    """Sample for `seconds` every `interval` seconds; progress(fraction) after each."""
    if not 0 < seconds <= MAX_SECONDS or not 0.05 <= interval <= seconds:
        raise errors.InvalidArguments(
            f"seconds must be in (0, {MAX_SECONDS:g}] and interval in [0.05, seconds]")
    snaps = [await asyncio.to_thread(snapshot, roots)]
    deadline = snaps[0].at + seconds
    while True:
        now = time.monotonic()
        if now >= deadline - 1e-3:
            break
        await asyncio.sleep(min(interval, deadline - now))
        snaps.append(await asyncio.to_thread(snapshot, roots))
        if progress is not None:
            progress(min(1.0, (snaps[-1].at - snaps[0].at) / seconds))
    return summarize(snaps, top)
