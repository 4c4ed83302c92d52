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
        assert calls == {"cpu": 1, "block": 1}
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
        assert calls == {"cpu": 1, "block": 1}

    asyncio.run(scenario())
