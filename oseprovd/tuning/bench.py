"""A short built-in benchmark suite, to show whether a profile helped.

Each metric runs several times; results keep every run, the median and the spread, so a
comparison can say whether a difference is larger than the noise. Nothing here needs
external tools: CPU (sha256), memory bandwidth (large copies), fsync latency in a
directory on the root filesystem, loopback TCP throughput and round-trip latency.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from oseprovd import errors

ID_RE = re.compile(r"^[0-9a-f]{32}$")


class Metric(BaseModel):
    name: str
    unit: str
    higher_is_better: bool
    runs: list[float]
    median: float
    spread: float  # (max - min) / median: the run-to-run noise, relative


class BenchmarkResult(BaseModel):
    id: str
    suite: str
    profile: str | None  # the tuning profile active while it ran
    started: float
    duration: float
    metrics: list[Metric]


class MetricChange(BaseModel):
    name: str
    unit: str
    before: float
    after: float
    change: float  # relative, positive = better
    noise: float  # the larger spread of the two
    significant: bool  # |change| larger than twice the noise


class Comparison(BaseModel):
    before: str
    after: str
    before_profile: str | None
    after_profile: str | None
    metrics: list[MetricChange]


class BenchmarkStore(Protocol):
    def save(self, result: BenchmarkResult) -> None: ...
    def load(self, bench_id: str) -> BenchmarkResult: ...
    def results(self) -> list[BenchmarkResult]: ...


class FileBenchmarkStore:
    """One JSON file per result in a directory (the daemon's state dir)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def save(self, result: BenchmarkResult) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{result.id}.tmp"
        tmp.write_text(result.model_dump_json())
        os.replace(tmp, self.dir / f"{result.id}.json")

    def load(self, bench_id: str) -> BenchmarkResult:
        if not ID_RE.fullmatch(bench_id):
            raise errors.InvalidArguments(f"invalid benchmark id {bench_id!r}")
        try:
            return BenchmarkResult.model_validate_json((self.dir / f"{bench_id}.json").read_text())
        except FileNotFoundError:
            raise errors.NotFound(f"no benchmark result {bench_id}") from None

    def results(self) -> list[BenchmarkResult]:
        out = [self.load(p.stem) for p in self.dir.glob("*.json") if ID_RE.fullmatch(p.stem)]
        return sorted(out, key=lambda r: r.started)


def _metric(name: str, unit: str, higher: bool, runs: list[float]) -> Metric:
    med = statistics.median(runs)
    spread = (max(runs) - min(runs)) / med if med else 0.0
    return Metric(name=name, unit=unit, higher_is_better=higher, runs=runs, median=med,
                  spread=spread)


def cpu_sha256(size: int) -> float:
    data = b"\x5a" * size
    t = time.perf_counter()
    hashlib.sha256(data).digest()
    return size / (time.perf_counter() - t) / 1e6  # MB/s


def memory_copy(size: int) -> float:
    src = bytearray(size)
    dst = bytearray(size)
    t = time.perf_counter()
    for _ in range(4):
        dst[:] = src
    return 4 * size / (time.perf_counter() - t) / 1e9  # GB/s


def fsync_latency(directory: Path, count: int) -> float:
    """Median microseconds for write(4 KiB) + fsync in `directory`."""
    path = directory / f".ose-bench-{uuid.uuid4().hex}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    block = b"\0" * 4096
    times = []
    try:
        for _ in range(count):
            t = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times) * 1e6


def _server(sock: socket.socket, mode: str, total: int) -> None:
    with sock:
        conn, _ = sock.accept()  # the listener closes only after accepting
    with conn:
        if mode == "stream":
            got = 0
            while got < total:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
            conn.sendall(got.to_bytes(8, "big"))
        else:
            for _ in range(total):
                if not conn.recv(1):
                    break
                conn.sendall(b"x")


def _loopback(mode: str, total: int) -> tuple[socket.socket, threading.Thread]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    thread = threading.Thread(target=_server, args=(srv, mode, total), daemon=True)
    thread.start()
    cli = socket.create_connection(srv.getsockname(), timeout=30)
    return cli, thread


def tcp_throughput(size: int) -> float:
    cli, thread = _loopback("stream", size)
    chunk = b"\0" * (1 << 20)
    with cli:
        t = time.perf_counter()
        sent = 0
        while sent < size:
            cli.sendall(chunk[: size - sent])
            sent += min(len(chunk), size - sent)
        got = int.from_bytes(cli.recv(8), "big")
        elapsed = time.perf_counter() - t
    thread.join(5)
    if got != size:
        raise errors.OseError(f"loopback test lost data: sent {size}, received {got}")
    return size / elapsed / 1e6  # MB/s


def tcp_latency(count: int) -> float:
    cli, thread = _loopback("pingpong", count)
    cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    with cli:
        for _ in range(count):
            t = time.perf_counter()
            cli.sendall(b"x")
            if cli.recv(1) != b"x":
                raise errors.OseError("loopback ping-pong broke")
            times.append(time.perf_counter() - t)
    thread.join(5)
    return statistics.median(times) * 1e6  # us


SUITES = {
    # name: (cpu bytes, memory bytes, fsync count, tcp bytes, ping-pongs)
    "quick": (32 << 20, 64 << 20, 50, 64 << 20, 500),
    "standard": (128 << 20, 256 << 20, 200, 256 << 20, 2000),
}


class Benchmarks:
    def __init__(self, store: BenchmarkStore, fsync_dir: Path) -> None:
        """fsync_dir: a directory on the filesystem to measure (the root fs's state dir)."""
        self.store = store
        self.fsync_dir = Path(fsync_dir)

    def run(
        self,
        suite: str,
        profile: str | None,
        runs: int = 5,
        progress: Callable[[float, str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> BenchmarkResult:
        if suite not in SUITES:
            raise errors.InvalidArguments(f"unknown suite {suite!r} (known: {', '.join(SUITES)})")
        if not 1 <= runs <= 50:
            raise errors.InvalidArguments("runs must be 1..50")
        cpu_n, mem_n, fsync_n, tcp_n, ping_n = SUITES[suite]
        tests: list[tuple[str, str, bool, Callable[[], float]]] = [
            ("cpu_sha256", "MB/s", True, lambda: cpu_sha256(cpu_n)),
            ("memory_copy", "GB/s", True, lambda: memory_copy(mem_n)),
            ("fsync_latency", "us", False, lambda: fsync_latency(self.fsync_dir, fsync_n)),
            ("tcp_loopback_throughput", "MB/s", True, lambda: tcp_throughput(tcp_n)),
            ("tcp_loopback_latency", "us", False, lambda: tcp_latency(ping_n)),
        ]
        started, t0 = time.time(), time.perf_counter()
        metrics = []
        for i, (name, unit, higher, fn) in enumerate(tests):
            values = []
            for _ in range(runs):
                if cancel is not None and cancel.is_set():
                    raise errors.Cancelled("benchmark cancelled")
                values.append(fn())
            metrics.append(_metric(name, unit, higher, values))
            if progress is not None:
                progress((i + 1) / len(tests), name)
        result = BenchmarkResult(id=uuid.uuid4().hex, suite=suite, profile=profile,
                                 started=started, duration=time.perf_counter() - t0,
                                 metrics=metrics)
        self.store.save(result)
        return result

    def compare(self, before_id: str, after_id: str) -> Comparison:
        a, b = self.store.load(before_id), self.store.load(after_id)
        return compare(a, b)


def compare(a: BenchmarkResult, b: BenchmarkResult) -> Comparison:
    after = {m.name: m for m in b.metrics}
    changes = []
    for m in a.metrics:
        n = after.get(m.name)
        if n is None or not m.median:
            continue
        rel = (n.median - m.median) / m.median
        change = rel if m.higher_is_better else -rel
        noise = max(m.spread, n.spread)
        changes.append(MetricChange(name=m.name, unit=m.unit, before=m.median, after=n.median,
                                    change=change, noise=noise,
                                    significant=abs(change) > 2 * noise))
    return Comparison(before=a.id, after=b.id, before_profile=a.profile,
                      after_profile=b.profile, metrics=changes)
