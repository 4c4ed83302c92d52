"""Performance profile: exact arithmetic on synthetic counters; on this machine a busy
child process and loopback traffic the test makes show up."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time

import pytest

from oseprovd import errors
from oseprovd.discovery import performance as perf
from oseprovd.discovery.roots import SystemRoots


def _snap(at: float, cpu: list[int], avail: int, disk: tuple[int, int, int],
          rx: int, ticks: int, pressure: float) -> perf.Snapshot:
    return perf.Snapshot(at=at, cpu={"cpu": cpu, "cpu0": cpu}, mem_total=1000,
                         mem_available=avail, swap_used=0, disks={"sda": disk},
                         net={"eth0": (rx, 0)}, procs={42: ("worker", ticks, 10)},
                         pressure={"cpu.some": pressure, "io.some": 1.0})


def test_summarize_exact() -> None:
    a = _snap(0.0, [0, 0, 0, 0, 0, 0, 0, 0], 500, (0, 0, 0), 0, 0, 0.0)
    b = _snap(1.0, [90, 0, 5, 5, 0, 0, 0, 0], 50, (2048, 0, 950), 1000, perf.CLK_TCK // 2, 0.0)
    c = _snap(2.0, [180, 0, 10, 10, 0, 0, 0, 0], 50, (4096, 8, 1900), 3000, perf.CLK_TCK,
              35.0)
    p = perf.summarize([a, b, c])
    assert (p.duration_s, p.samples) == (2.0, 3)
    assert (p.cpu.busy_pct_avg, p.cpu.busy_pct_max) == (95.0, 95.0)
    assert p.memory.used_pct_max == 95.0 and p.memory.used_pct_avg == pytest.approx(80.0)
    sda = p.disks[0]
    assert (sda.read_bytes_per_s, sda.write_bytes_per_s, sda.util_pct) == (
        4096 * 512 / 2, 8 * 512 / 2, 95.0)
    assert p.network[0].rx_bytes_per_s == 1500.0
    assert [(t.pid, t.comm, t.cpu_pct) for t in p.top_processes] == [(42, "worker", 50.0)]
    assert p.saturated == ["cpu", "disk sda", "cpu pressure"]


def test_bad_arguments() -> None:
    with pytest.raises(errors.InvalidArguments):
        asyncio.run(perf.profile(SystemRoots(), 0))
    with pytest.raises(errors.InvalidArguments):
        asyncio.run(perf.profile(SystemRoots(), 1, interval=5))
    with pytest.raises(errors.InvalidArguments):
        perf.summarize([])


def _cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` as the kernel counts them (proc(5), fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / perf.CLK_TCK


def test_busy_process_and_loopback_traffic_show_up() -> None:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    sent = 8 << 20

    def traffic() -> None:
        with socket.create_connection(server.getsockname()) as c:
            conn, _ = server.accept()

            def drain() -> None:
                got = 0
                while got < sent:
                    got += len(conn.recv(1 << 20))

            reader = threading.Thread(target=drain)
            reader.start()
            c.sendall(b"x" * sent)
            reader.join(10)
            conn.close()

    try:
        worker = threading.Thread(target=traffic)
        fractions: list[float] = []

        async def run() -> perf.PerformanceProfile:
            task = asyncio.ensure_future(perf.profile(SystemRoots(), 1.5, 0.5,
                                                      progress=fractions.append))
            await asyncio.sleep(0.2)
            worker.start()
            return await task

        cpu_before, t_before = _cpu_seconds(child.pid), time.monotonic()
        p = asyncio.run(run())
        cpu_after, t_after = _cpu_seconds(child.pid), time.monotonic()
        worker.join(10)
    finally:
        child.kill()
        child.wait()
        server.close()
    busy = next(t for t in p.top_processes if t.pid == child.pid)
    # Ground truth: the kernel's count for the child over a window that brackets the
    # profile's. How much CPU a spinner gets depends on the machine's load; the profile
    # must report what it got, not more, and not much less, given the same average rate.
    kernel_pct = 100 * (cpu_after - cpu_before) / (t_after - t_before)
    assert kernel_pct > 1
    assert busy.cpu_pct * p.duration_s / 100 <= cpu_after - cpu_before + 0.02
    assert busy.cpu_pct >= 0.5 * kernel_pct, (busy.cpu_pct, kernel_pct)
    assert p.cpu.busy_pct_avg > 0
    lo = next(n for n in p.network if n.name == "lo")
    # duration_s is rounded to 10 ms: allow 1 % for that.
    assert lo.rx_bytes_per_s * p.duration_s >= sent * 0.99
    assert fractions and fractions[-1] == 1.0 and p.samples >= 3
