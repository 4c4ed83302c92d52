"""The cache behind Get*: TTL, shared runs, failures not kept, hot-plug invalidation."""

from __future__ import annotations

import asyncio
import threading

from pydantic import BaseModel

from oseprovd.discovery import DiscoveryCache, DiscoveryEngine, SystemRoots
from oseprovd.discovery.collectors.block import BlockInfo
from oseprovd.discovery.collectors.cpu import CpuInfo
from oseprovd.discovery.registry import CollectorSpec


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _engine(calls: dict[str, int], fail: set[str], gate: threading.Event | None = None
            ) -> DiscoveryEngine:
    def counted(name: str, model: BaseModel) -> CollectorSpec:
        def run(_: SystemRoots) -> BaseModel:
            calls[name] = calls.get(name, 0) + 1
            if gate is not None:
                gate.wait(10)
            if name in fail:
                raise OSError("device gone")
            return model
        return CollectorSpec(name, run, 5.0, minimal=name == "cpu")

    return DiscoveryEngine(SystemRoots(), specs=[counted("cpu", CpuInfo()),
                                                 counted("block", BlockInfo())],
                           groups={"hardware": ("cpu", "block")})


def test_ttl_and_device_events() -> None:
    calls: dict[str, int] = {}
    clock = Clock()
    cache = DiscoveryCache(_engine(calls, set()), ttl=60, clock=clock)

    async def scenario() -> None:
        await cache.get(["hardware"])
        await cache.get(["hardware"])
        assert calls == {"cpu": 1, "block": 1} and cache.runs == 2
        assert cache.device_event("block") == ["block"]
        report = await cache.get(["hardware"])
        assert calls == {"cpu": 1, "block": 2} and report.block == BlockInfo()
        clock.now += 61
        await cache.get(["block"])
        assert calls == {"cpu": 2, "block": 3}
        assert cache.device_event("sound") == []

    asyncio.run(scenario())


def test_failures_are_not_cached() -> None:
    calls: dict[str, int] = {}
    fail = {"block"}
    cache = DiscoveryCache(_engine(calls, fail), ttl=60, clock=Clock())

    async def scenario() -> None:
        first = await cache.get(["block"])
        assert first.outcome("block").status == "error"  # type: ignore[union-attr]
        fail.clear()
        second = await cache.get(["block"])
        assert second.outcome("block").status == "ok"  # type: ignore[union-attr]
        assert calls["block"] == 2

    asyncio.run(scenario())


def test_concurrent_callers_share_one_run() -> None:
    calls: dict[str, int] = {}
    gate = threading.Event()
    cache = DiscoveryCache(_engine(calls, set(), gate), ttl=60, clock=Clock())

    async def scenario() -> None:
        tasks = [asyncio.ensure_future(cache.get(["block"])) for _ in range(5)]
        await asyncio.sleep(0.2)
        gate.set()
        reports = await asyncio.gather(*tasks)
        assert all(r.block == BlockInfo() for r in reports)
        assert calls == {"cpu": 1, "block": 1} and cache.runs == 2

    asyncio.run(scenario())


def test_derived_forms_live_and_die_with_the_cached_section() -> None:
    """What Get* and Describe make from a section (its D-Bus value, its JSON) is made
    once per cached answer, and goes when a refresh replaces the answer: no old
    section is kept alive beside the new one."""
    import gc
    import weakref

    calls: dict[str, int] = {}
    cache = DiscoveryCache(_engine(calls, set()), ttl=60, clock=Clock())
    made: list[str] = []

    class Form:
        pass

    def make(section: BaseModel) -> Form:
        made.append(type(section).__name__)
        return Form()

    async def scenario() -> None:
        first = (await cache.get(["block"])).block
        assert first is not None
        a = cache.derived("block", first, "json", make)
        assert cache.derived("block", first, "json", make) is a and made == ["BlockInfo"]
        assert cache.derived("block", first, "dbus", make) is not a  # another key
        held = weakref.ref(a)
        cache.invalidate(["block"])
        second = (await cache.get(["block"])).block
        assert second is not None
        del a
        gc.collect()
        assert held() is None  # dropped with the entry
        cache.derived("block", second, "json", make)
        # A section that is not (or no longer) the cached one: made, never kept.
        stale = BlockInfo()
        cache.derived("block", stale, "json", make)
        cache.derived("block", stale, "json", make)
        assert made == ["BlockInfo"] * 5

    asyncio.run(scenario())
