"""The discovery engine: what the bus layer, osectl's facts script and tests call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from pydantic import BaseModel

from oseprovd import errors
from oseprovd.discovery import subset as subset_mod
from oseprovd.discovery.registry import GROUPS, SPECS, CollectorSpec, with_unit_states
from oseprovd.discovery.report import CollectorOutcome, Report
from oseprovd.discovery.roots import SystemRoots
from oseprovd.discovery.runner import CollectorRunner, Result
from oseprovd.discovery.unitstates import UnitStateSource

MAX_TIMEOUT = 600.0


class DiscoveryEngine:
    """Scan a machine (or a sandbox tree that looks like one).

    `specs` defaults to every known collector; tests pass their own (a hanging one).
    `unit_states` (the running systemd, from the bus layer) adds units' active/sub
    states to the services collector; give it only when the target is the live system.
    """

    def __init__(self, roots: SystemRoots | None = None,
                 specs: Sequence[CollectorSpec] = SPECS,
                 groups: dict[str, tuple[str, ...]] | None = None,
                 unit_states: UnitStateSource | None = None) -> None:
        self.roots = roots or SystemRoots()
        self.unit_states = unit_states
        self.specs = tuple(specs) if unit_states is None else with_unit_states(
            tuple(specs), unit_states)
        self.groups = dict(GROUPS if groups is None else groups)
        self._runner = CollectorRunner(self.roots, self.specs)

    @property
    def collector_names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def resolve(self, subset: Sequence[str]) -> list[str]:
        """Collector names for an Ansible-style subset; InvalidArguments if unknown."""
        groups = {g: [m for m in members if m in self._runner.specs]
                  for g, members in self.groups.items()}
        return subset_mod.resolve(subset, self.collector_names, groups,
                                  [s.name for s in self.specs if s.minimal],
                                  [s.name for s in self.specs if s.in_all])

    async def collect(self, subset: Sequence[str] = ("all",), timeout: float | None = None,
                      progress: Callable[[str, int, int], None] | None = None,
                      fetch: Callable[[str], Awaitable[Result]] | None = None) -> Report:
        """Run the selected collectors; never raises for a collector's own failure.

        `progress(name, done, total)` is called as each one finishes; `fetch` replaces
        running a collector (DiscoveryCache answers from its cache that way).
        """
        if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
            raise errors.InvalidArguments(f"timeout must be in (0, {MAX_TIMEOUT:g}] seconds")
        names = self.resolve(subset)
        return await self._runner.run(names, subset, timeout, progress, fetch)

    async def collect_one(self, name: str, timeout: float | None = None
                          ) -> tuple[CollectorOutcome, BaseModel | None]:
        """One collector: how it went, and its section (None unless the outcome is ok)."""
        if name not in self._runner.specs:
            self.resolve([name])  # raises InvalidArguments with the valid names
        return await self._runner.run_one(name, timeout)

    def collect_sync(self, subset: Sequence[str] = ("all",),
                     timeout: float | None = None) -> Report:
        """collect() for callers without a loop (the Ansible facts script, tests)."""
        return asyncio.run(self.collect(subset, timeout))
