"""The runner: concurrency, per-collector timeouts, failures that stay local, subsets."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from oseprovd import errors
from oseprovd.discovery import DiscoveryEngine, SystemRoots
from oseprovd.discovery.collectors.block import BlockInfo
from oseprovd.discovery.collectors.cpu import CpuInfo
from oseprovd.discovery.collectors.memory import MemoryInfo
from oseprovd.discovery.collectors.power import PowerInfo
from oseprovd.discovery.registry import GROUPS, SPECS, CollectorSpec
from oseprovd.discovery.report import Report
from oseprovd.discovery.subset import resolve


class Ok(BaseModel):
    value: int = 1


def _specs(release: threading.Event) -> list[CollectorSpec]:
    def hang(_: SystemRoots) -> BaseModel:
        release.wait(30)
        return BlockInfo()

    def boom(_: SystemRoots) -> BaseModel:
        raise RuntimeError("disk on fire")

    return [CollectorSpec("cpu", lambda _: CpuInfo(), 5.0, minimal=True),
            CollectorSpec("memory", lambda _: Ok(), 5.0),  # a bug: wrong section type
            CollectorSpec("block", hang, 0.5),
            CollectorSpec("power", boom, 5.0)]


def test_hanging_collector_does_not_hang_the_scan() -> None:
    release = threading.Event()
    engine = DiscoveryEngine(SystemRoots(), specs=_specs(release), groups={})
    try:
        t0 = time.monotonic()
        report = asyncio.run(engine.collect(["all"]))
        elapsed = time.monotonic() - t0
        assert elapsed < 3.0  # the hung collector's timeout is 0.5 s
        by = {o.name: o for o in report.outcomes}
        assert by["block"].status == "timeout" and "0.5s" in (by["block"].error or "")
        assert by["power"].status == "error" and "disk on fire" in (by["power"].error or "")
        assert by["cpu"].status == "ok" and report.cpu == CpuInfo()
        assert by["memory"].status == "error" and "Ok" in (by["memory"].error or "")
        assert report.block is None and report.power is None
        # A second scan does not start another thread for the still-stuck collector.
        again = asyncio.run(engine.collect(["block"]))
        assert again.outcome("block").status == "error"  # type: ignore[union-attr]
        assert "earlier scan" in (again.outcome("block").error or "")  # type: ignore[union-attr]
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while any(t.name == "discovery-block" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # Once it has returned, it runs again (and this time answers).
    assert asyncio.run(engine.collect(["block"])).outcome("block").status == "ok"  # type: ignore[union-attr]


def test_scan_timeout_caps_collector_timeouts() -> None:
    release = threading.Event()
    specs = [CollectorSpec("block", lambda _: (release.wait(30), BlockInfo())[1], 60.0)]
    engine = DiscoveryEngine(SystemRoots(), specs=specs, groups={})
    try:
        t0 = time.monotonic()
        report = asyncio.run(engine.collect(["block"], timeout=0.3))
        assert time.monotonic() - t0 < 2.0
        assert report.outcomes[0].status == "timeout"
    finally:
        release.set()


def test_collectors_run_concurrently() -> None:
    def slow(model: BaseModel) -> CollectorSpec:
        def run(_: SystemRoots) -> BaseModel:
            time.sleep(0.4)
            return model
        return CollectorSpec(type(model).__name__, run, 5.0)

    specs = [CollectorSpec(name, slow(m).collect, 5.0) for name, m in
             (("cpu", CpuInfo()), ("memory", MemoryInfo()), ("block", BlockInfo()),
              ("power", PowerInfo()))]
    engine = DiscoveryEngine(SystemRoots(), specs=specs, groups={})
    t0 = time.monotonic()
    report = engine.collect_sync(["all"])
    assert time.monotonic() - t0 < 1.2  # four 0.4 s collectors, not 1.6 s in a row
    assert all(o.status == "ok" for o in report.outcomes)


def test_real_scan_of_this_machine_is_complete() -> None:
    report = DiscoveryEngine().collect_sync(["all"])
    assert [o.name for o in report.failed] == []
    assert report.collectors == [s.name for s in SPECS if s.in_all]
    for spec in SPECS:
        assert (getattr(report, spec.name) is not None) == spec.in_all


def test_every_collector_has_a_report_section() -> None:
    for spec in SPECS:
        assert spec.name in Report.model_fields
    names = {s.name for s in SPECS}
    for group, members in GROUPS.items():
        assert set(members) <= names
        assert group not in names and group not in ("all", "min")


NAMES = ["cpu", "memory", "block", "network", "cloud"]
GROUP = {"hardware": ["cpu", "memory", "block"]}
MIN = ["cpu", "memory"]


@pytest.mark.parametrize(("subset", "expected"), [
    (["all"], NAMES),
    ([], NAMES),
    (["min"], MIN),
    (["!all"], MIN),
    (["!all", "!min"], []),
    (["cloud"], ["cpu", "memory", "cloud"]),
    (["!hardware"], ["network", "cloud"]),  # '!min' not given, but hardware removes them
    (["!block"], ["cpu", "memory", "network", "cloud"]),
    (["all", "!cloud", "!network"], ["cpu", "memory", "block"]),
    (["!all", "network"], ["cpu", "memory", "network"]),
    (["hardware", "!min"], ["block"]),
])
def test_subset_resolution(subset: list[str], expected: list[str]) -> None:
    assert resolve(subset, NAMES, GROUP, MIN) == expected


@pytest.mark.parametrize("bad", [["nope"], ["!nope"], ["all", "hardwares"]])
def test_unknown_subset_is_invalid_arguments(bad: list[str]) -> None:
    with pytest.raises(errors.InvalidArguments, match="choose from"):
        resolve(bad, NAMES, GROUP, MIN)


def test_engine_subset_on_sandbox(tmp_path: Path) -> None:
    report = DiscoveryEngine(SystemRoots.sandbox(tmp_path)).collect_sync(["!all", "cloud"])
    assert set(report.collectors) == {"cpu", "memory", "dmi", "virtualization", "os",
                                      "cloud"}
    assert report.cloud is not None and report.cloud.status == "none"
    assert report.block is None


def test_collect_one_and_progress() -> None:
    engine = DiscoveryEngine()
    outcome, section = asyncio.run(engine.collect_one("memory"))
    assert outcome.status == "ok" and isinstance(section, MemoryInfo)
    with pytest.raises(errors.InvalidArguments):
        asyncio.run(engine.collect_one("nope"))
    seen: list[tuple[str, int, int]] = []
    report = asyncio.run(engine.collect(["min"], progress=lambda *a: seen.append(a)))
    assert sorted(n for n, _, _ in seen) == sorted(report.collectors)
    assert sorted(done for _, done, _ in seen) == list(range(1, len(report.collectors) + 1))


def test_bad_timeout_and_relative_roots() -> None:
    with pytest.raises(errors.InvalidArguments):
        DiscoveryEngine().collect_sync(["min"], timeout=0)
    with pytest.raises(ValueError, match="absolute"):
        SystemRoots(target=Path("relative/root"))
