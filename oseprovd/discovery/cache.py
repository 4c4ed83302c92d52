"""Cached sections for the bus's Get* methods: each collector's last good answer is kept
for a TTL; concurrent callers share one run; hot-plug events drop what they made stale.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from oseprovd.discovery.engine import DiscoveryEngine
from oseprovd.discovery.report import CollectorOutcome, Report
from oseprovd.discovery.runner import Result

T = TypeVar("T")

# udev subsystem -> collectors whose answer a device event in it can change.
SUBSYSTEM_COLLECTORS: dict[str, tuple[str, ...]] = {
    "block": ("block", "mounts"),
    "net": ("nics", "network", "sockets"),
    "power_supply": ("power",),
    "pci": ("gpus", "nics", "block"),
    "drm": ("gpus",),
    "cpu": ("cpu",),
    "memory": ("memory",),
    "usb": ("block", "nics", "power"),
}


@dataclass
class _Entry:
    at: float
    result: Result
    # Other forms of the section (its D-Bus value, its JSON text), made once by the
    # caller and dropped with the entry, so that no old section outlives its refresh.
    derived: dict[object, object] = field(default_factory=dict)


class DiscoveryCache:
    def __init__(self, engine: DiscoveryEngine, ttl: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[Result]] = {}
        self.runs = 0  # collector runs started so far (a caller can tell a fill from a hit)

    async def _fetch(self, name: str, timeout: float | None) -> Result:
        entry = self._entries.get(name)
        if entry is not None and self.clock() - entry.at < self.ttl:
            return entry.result
        task = self._inflight.get(name)
        if task is None:
            task = asyncio.ensure_future(self.engine.collect_one(name, timeout))
            self.runs += 1
            self._inflight[name] = task
            try:
                result = await asyncio.shield(task)
            finally:
                self._inflight.pop(name, None)
            if result[0].status == "ok":  # failures are retried on the next call
                self._entries[name] = _Entry(self.clock(), result)
            return result
        return await asyncio.shield(task)

    async def get(self, subset: Sequence[str], timeout: float | None = None,
                  progress: Callable[[str, int, int], None] | None = None) -> Report:
        """Like DiscoveryEngine.collect(), answering fresh sections from the cache."""
        async def fetch(name: str) -> Result:
            return await self._fetch(name, timeout)

        return await self.engine.collect(subset, timeout, progress, fetch=fetch)

    async def section(self, name: str) -> tuple[CollectorOutcome, BaseModel | None]:
        self.engine.resolve([name])
        return await self._fetch(name, None)

    def derived(self, name: str, section: BaseModel, key: object,
                make: Callable[[BaseModel], T]) -> T:
        """`make(section)`, remembered with the cached entry of collector `name` while
        that entry still holds this very section (else made and not kept)."""
        entry = self._entries.get(name)
        if entry is None or entry.result[1] is not section:
            return make(section)
        if key not in entry.derived:
            entry.derived[key] = make(section)
        value: T = entry.derived[key]  # type: ignore[assignment]
        return value

    def invalidate(self, names: Iterable[str] | None = None) -> None:
        """Forget some collectors' answers (all when `names` is None)."""
        if names is None:
            self._entries.clear()
            return
        for name in names:
            self._entries.pop(name, None)

    def device_event(self, subsystem: str) -> list[str]:
        """A udev event in `subsystem`: drop the stale answers, return their names."""
        stale = [n for n in SUBSYSTEM_COLLECTORS.get(subsystem, ()) if n in self._entries]
        self.invalidate(stale)
        return stale
