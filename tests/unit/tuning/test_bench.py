"""The built-in benchmark suite: real measurements, stored, compared against the noise."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from oseprovd import errors
from oseprovd.tuning.bench import (
    BenchmarkResult,
    Benchmarks,
    FileBenchmarkStore,
    _metric,
    compare,
)


def test_quick_suite_runs_and_is_stored(tmp_path: Path):
    work = tmp_path / "fs"
    work.mkdir()
    store = FileBenchmarkStore(tmp_path / "results")
    bench = Benchmarks(store, work)
    seen: list[str] = []
    result = bench.run("quick", "balanced", runs=2, progress=lambda f, n: seen.append(n))
    names = [m.name for m in result.metrics]
    assert names == ["cpu_sha256", "memory_copy", "fsync_latency", "tcp_loopback_throughput",
                     "tcp_loopback_latency"] == seen
    for m in result.metrics:
        assert len(m.runs) == 2 and all(v > 0 for v in m.runs)
        assert min(m.runs) <= m.median <= max(m.runs)
    assert list(work.iterdir()) == []  # the fsync file is gone
    assert store.load(result.id) == result
    assert [r.id for r in store.results()] == [result.id]


def test_compare_separates_effect_from_noise():
    def result(rid: str, fsync: list[float], cpu: list[float]) -> BenchmarkResult:
        return BenchmarkResult(id=rid, suite="quick", profile=rid, started=0, duration=1,
                               metrics=[_metric("fsync_latency", "us", False, fsync),
                                        _metric("cpu_sha256", "MB/s", True, cpu)])
    a = result("a" * 32, [100, 101, 99], [500, 600, 400])
    b = result("b" * 32, [50, 51, 49], [520, 610, 410])
    cmp = {m.name: m for m in compare(a, b).metrics}
    assert cmp["fsync_latency"].change == pytest.approx(0.5)  # half the latency: better
    assert cmp["fsync_latency"].significant
    assert cmp["cpu_sha256"].change > 0 and not cmp["cpu_sha256"].significant  # in the noise


def test_bad_arguments_and_cancel(tmp_path: Path):
    bench = Benchmarks(FileBenchmarkStore(tmp_path), tmp_path)
    with pytest.raises(errors.InvalidArguments):
        bench.run("marathon", None)
    with pytest.raises(errors.InvalidArguments):
        bench.compare("../../etc/passwd", "a" * 32)
    with pytest.raises(errors.NotFound):
        bench.compare("a" * 32, "b" * 32)
    stop = threading.Event()
    stop.set()
    with pytest.raises(errors.Cancelled):
        bench.run("quick", None, cancel=stop)
