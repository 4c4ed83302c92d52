"""The retention timer: every `interval` seconds a timeline snapshot of each config that
wants one, then its cleanup (snapper's timeline and cleanup timers in one loop)."""

from __future__ import annotations

import asyncio
import logging

from oseprovd.errors import OseError
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.models import SnapshotConfig

log = logging.getLogger(__name__)


def wants_timeline(config: SnapshotConfig) -> bool:
    """A copy-backend snapshot saves only what an operation declares (or whole_paths):
    a timeline of empty stores would be noise."""
    if not config.retention.timeline_create:
        return False
    return config.backend != "copy" or bool(config.whole_paths)


def tick(engine: SnapshotEngine) -> None:
    """One round, blocking (run it in a worker thread). A failing config is logged and
    does not stop the others."""
    for config in engine.list_configs():
        try:
            if wants_timeline(config):
                record = engine.timeline_snapshot(config.name)
                if record is not None:
                    log.info("snapshots: timeline snapshot %s", record.id)
            result = engine.cleanup(config.name)
            if result.deleted:
                log.info("snapshots: cleanup of %s deleted %s", config.name,
                         ", ".join(result.deleted))
        except (OseError, OSError) as exc:
            log.warning("snapshots: timer round for %s failed: %s", config.name, exc)


async def retention_timer(engine: SnapshotEngine, interval: float) -> None:
    """Runs until cancelled; the first round comes one interval after the start."""
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(tick, engine)
