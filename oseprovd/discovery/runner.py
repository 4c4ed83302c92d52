"""Run collectors concurrently, each with its own timeout, each failing alone.

Every collector runs in its own daemon thread rather than asyncio's default executor:
a collector stuck in the kernel (a dead device, a hung read) cannot be interrupted, and
in the shared executor it would hold a worker forever and make the loop's shutdown wait
for it. Here the scan returns at the timeout with an error entry; the stuck thread is
remembered, and the same collector is not started again until it has returned, so a
stuck device can't pile up threads scan after scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel

from oseprovd.discovery.registry import CollectorSpec
from oseprovd.discovery.report import CollectorOutcome, Report, Status, section_type
from oseprovd.discovery.roots import SystemRoots

log = logging.getLogger(__name__)

Result = tuple[CollectorOutcome, BaseModel | None]


@dataclass
class _Done:
    value: BaseModel | None = None
    error: BaseException | None = None


class CollectorRunner:
    def __init__(self, roots: SystemRoots, specs: Sequence[CollectorSpec]) -> None:
        self.roots = roots
        self.specs = {spec.name: spec for spec in specs}
        self._busy: set[str] = set()  # collectors whose thread has not returned yet
        self._lock = threading.Lock()

    def _start(self, spec: CollectorSpec, loop: asyncio.AbstractEventLoop,
               future: asyncio.Future[_Done]) -> None:
        def deliver(done: _Done) -> None:
            if not future.done():
                future.set_result(done)

        def body() -> None:
            try:
                done = _Done(value=spec.collect(self.roots))
            except BaseException as exc:  # reported as this collector's error
                done = _Done(error=exc)
            finally:
                with self._lock:
                    self._busy.discard(spec.name)
            # RuntimeError: the loop closed while we were stuck; nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, done)

        thread = threading.Thread(target=body, name=f"discovery-{spec.name}", daemon=True)
        thread.start()

    async def run_one(self, name: str, timeout: float | None = None) -> Result:
        spec = self.specs[name]
        limit = spec.timeout if timeout is None else min(timeout, spec.timeout)
        started = time.monotonic()

        def outcome(status: Status, error: str | None = None) -> CollectorOutcome:
            return CollectorOutcome(name=name, status=status,
                                    duration_ms=round((time.monotonic() - started) * 1000, 3),
                                    error=error)

        with self._lock:
            if name in self._busy:
                return outcome("error", "still running from an earlier scan"), None
            self._busy.add(name)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Done] = loop.create_future()
        try:
            self._start(spec, loop, future)
        except RuntimeError as exc:  # no thread could be started
            with self._lock:
                self._busy.discard(name)
            return outcome("error", f"could not start: {exc}"), None
        try:
            done = await asyncio.wait_for(future, limit)
        except TimeoutError:
            log.warning("discovery collector %s timed out after %.1fs", name, limit)
            return outcome("timeout", f"no answer within {limit:g}s"), None
        if done.error is not None:
            log.error("discovery collector %s failed", name, exc_info=done.error)
            return outcome("error", f"{type(done.error).__name__}: {done.error}"), None
        expected = section_type(name)
        if expected is None or not isinstance(done.value, expected):
            # A bug in one collector must not make the whole report invalid.
            got = type(done.value).__name__
            log.error("discovery collector %s returned %s", name, got)
            return outcome("error", f"returned {got}, not the report's section type"), None
        return outcome("ok"), done.value

    async def run(self, names: Sequence[str], subset: Sequence[str],
                  timeout: float | None = None,
                  progress: Callable[[str, int, int], None] | None = None,
                  fetch: Callable[[str], Awaitable[Result]] | None = None) -> Report:
        """Run `names` concurrently; `timeout` caps every collector's own timeout.

        `fetch` replaces running a collector (the cache passes its own lookup).
        """
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        finished = 0

        async def one(name: str) -> Result:
            nonlocal finished
            result = await (fetch(name) if fetch else self.run_one(name, timeout))
            finished += 1
            if progress is not None:
                progress(name, finished, len(names))
            return result

        results = await asyncio.gather(*(one(n) for n in names))
        sections = {o.name: value for o, value in results if value is not None}
        report = Report(
            started_at=started_at, finished_at=datetime.now(UTC),
            duration_ms=round((time.monotonic() - t0) * 1000, 3),
            subset=list(subset), collectors=list(names),
            outcomes=[o for o, _ in results],
        )
        # Each section was checked against its slot's type in run_one().
        return report.model_copy(update=sections)
