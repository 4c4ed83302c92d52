"""org.ose.Snapshots1 at /org/ose/Provisioning1/Snapshots: configs, snapshots, create,
delete, diff (a job whose entries are read back a page at a time), undo, rollback and
cleanup, over the snapshot engine.

The engine is synchronous: every call that touches a filesystem runs in a worker thread.
Paths travel as `ay` (a file name need not be UTF-8).
"""

# No "from __future__ import annotations": dbus-fast reads "-> None" as no reply value
# only when the annotation is the real None.

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from dbus_fast.service import ServiceInterface, method, signal
from pydantic import Field

from oseprovd.bus import guard
from oseprovd.bus.convert import to_dbus
from oseprovd.bus.guard import BusContext, authorize, exported
from oseprovd.bus.models import Options
from oseprovd.bus.names import IFACE_SNAPSHOTS, Action, job_path
from oseprovd.bus.namewatch import NameWatch
from oseprovd.errors import InvalidArguments, NotFound
from oseprovd.jobs import JobContext, JobManager
from oseprovd.snapshots.engine import MAX_UNDO_PATHS, MAX_USERDATA, SnapshotEngine
from oseprovd.snapshots.ids import check_config_name, check_snapshot_id
from oseprovd.snapshots.models import DiffEntry, SnapshotConfig, SnapshotRecord
from oseprovd.store.snapshots import DiffPages
from oseprovd.system.rootfs import split_rel

MAX_DELETE = 1000
MAX_PAGE = 5000
MAX_ROWS = 2**63 - 1  # SQLite's integers are signed 64-bit
DIFF_BATCH = 1000
DIFF_OPERATION = "snapshots.diff"
PROGRESS_EVERY = 0.1  # seconds between an undo's progress updates

log = logging.getLogger(__name__)


class CreateRequest(Options):
    config: str = Field(max_length=32)
    description: str = Field("", max_length=1024)
    userdata: dict[str, str] = Field(default_factory=dict, max_length=MAX_USERDATA)


class IdsRequest(Options):
    ids: tuple[str, ...] = Field(min_length=1, max_length=MAX_DELETE)


class DiffRequest(Options):
    snapshot: str
    other: str = ""


class SnapshotRef(Options):
    snapshot: str


class ConfigRef(Options):
    config: str


class UndoRequest(Options):
    snapshot: str
    # Surrogate-escaped (os.fsdecode), so any file name survives the digest and the engine.
    paths: tuple[str, ...] = Field(min_length=1, max_length=MAX_UNDO_PATHS)


def shown(path: str) -> str:
    """A surrogate-escaped name (os.fsdecode) as valid UTF-8 text, \\xNN for bad bytes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def record_to_dbus(record: SnapshotRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    data["created"] = record.created.timestamp()  # seconds since the epoch, as jobs give
    return to_dbus(data)


def config_to_dbus(config: SnapshotConfig) -> dict[str, Any]:
    return to_dbus(config.model_dump(mode="json"))


class SnapshotsInterface(ServiceInterface):
    def __init__(self, ctx: BusContext, engine: SnapshotEngine, jobs: JobManager,
                 diffs: DiffPages, names: NameWatch | None = None) -> None:
        super().__init__(IFACE_SNAPSHOTS)
        self.ctx = ctx
        self._engine = engine
        self._jobs = jobs
        self._diffs = diffs
        self._loop: asyncio.AbstractEventLoop | None = None
        # Snapshot id -> the unique names that asked for its browse mount: it goes when
        # the last of them leaves the bus.
        self._mount_owners: dict[str, set[str]] = {}
        if names is not None:
            names.on_vanished(self._caller_left)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Turn the engine's notices (from its worker threads; also those of snapshots
        other engines make through pre_post) into signals on the bus."""
        self._loop = loop
        self._engine.on_created = self._created_threadsafe
        self._engine.on_deleted = self._deleted_threadsafe

    def _created_threadsafe(self, record: SnapshotRecord) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.SnapshotCreated, record.id)

    def _deleted_threadsafe(self, ids: list[str]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.SnapshotsDeleted, list(ids))

    # --- signals ------------------------------------------------------------------------

    @signal()
    def SnapshotCreated(self, snapshot_id: str) -> "s":
        return snapshot_id

    @signal()
    def SnapshotsDeleted(self, ids: list[str]) -> "as":
        return ids

    # --- reads (public) -----------------------------------------------------------------

    @method()
    @exported(public=True)
    def ListConfigs(self) -> "aa{sv}":
        return [config_to_dbus(c) for c in self._engine.list_configs()]

    @method()
    @exported(public=True)
    def ListSnapshots(self, config: "s") -> "aa{sv}":
        return [record_to_dbus(r) for r in self._engine.list_snapshots(config)]

    @method()
    @exported(public=True)
    def GetSnapshot(self, snapshot_id: "s") -> "a{sv}":
        return record_to_dbus(self._engine.get_snapshot(snapshot_id))

    # --- changes ------------------------------------------------------------------------

    @method()
    @exported(Action.SNAPSHOTS_CREATE, expensive=True)
    async def CreateSnapshot(self, config: "s", description: "s", userdata: "a{ss}") -> "s":
        req = CreateRequest(config=config, description=description, userdata=userdata)
        self._engine.config(req.config)  # InvalidArgs / NotFound before asking polkit
        await authorize(req)
        record = await asyncio.to_thread(self._engine.create_snapshot, req.config,
                                         req.description, req.userdata)
        return record.id

    @method()
    @exported(Action.SNAPSHOTS_DELETE, expensive=True)
    async def DeleteSnapshots(self, ids: "as") -> "as":
        req = IdsRequest(ids=tuple(check_snapshot_id(i) for i in ids))
        await authorize(req)
        return await asyncio.to_thread(self._engine.delete_snapshots, list(req.ids))

    @method()
    @exported(Action.SNAPSHOTS_DIFF, expensive=True)
    async def Diff(self, snapshot_id: "s", other: "s") -> "o":
        """What changed from `snapshot_id` to `other` ("" = the live tree). The job's
        Result has `diff` (its id for GetDiffPage) and counts; the entries are pages."""
        req = DiffRequest(snapshot=check_snapshot_id(snapshot_id),
                          other=check_snapshot_id(other) if other else "")
        who = await authorize(req)

        async def run(job: JobContext) -> dict[str, Any]:
            cancel = threading.Event()
            loop = asyncio.get_running_loop()
            watcher = loop.create_task(job.wait_cancelled(24 * 3600))
            watcher.add_done_callback(lambda _: cancel.set())
            try:
                counts = await asyncio.to_thread(self._run_diff, job, req, loop, cancel)
            finally:
                watcher.cancel()
            job.check_cancelled()
            return {"diff": job.job_id, "snapshot": req.snapshot, "other": req.other,
                    "entries": sum(counts.values()), **counts}

        job = self._jobs.start(DIFF_OPERATION, who.uid, run)
        return job_path(job.id)

    def _run_diff(self, job: JobContext, req: DiffRequest, loop: asyncio.AbstractEventLoop,
                  cancel: threading.Event) -> dict[str, int]:
        """In one worker thread: the engine's diff generator holds fds while iterated."""
        counts = {"created": 0, "deleted": 0, "content": 0, "metadata": 0}
        self._diffs.start(job.job_id)
        entries: Iterator[DiffEntry] = self._engine.diff(req.snapshot, req.other or None)
        seq = 0
        batch: list[tuple[bytes, str]] = []
        try:
            for entry in entries:
                batch.append((os.fsencode(entry.path), entry.change))
                counts[entry.change] += 1
                if len(batch) >= DIFF_BATCH:
                    self._diffs.add(job.job_id, seq, batch)
                    seq += len(batch)
                    batch = []
                    loop.call_soon_threadsafe(job.progress, 0.5, f"{seq} changes so far")
                    if cancel.is_set():
                        break
            self._diffs.add(job.job_id, seq, batch)
        finally:
            close = getattr(entries, "close", None)
            if close is not None:
                close()
        return counts

    @method()
    @exported(Action.SNAPSHOTS_DIFF, expensive=True)
    async def GetDiffPage(self, diff: "t", offset: "t", limit: "u") -> "a(ays)":
        """Entries [offset, offset+limit) of a Diff job, as (path bytes, change). The user
        who ran the Diff reads it freely; anyone else needs the diff action."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidArguments(f"limit is 1 to {MAX_PAGE}")
        try:
            job = self._jobs.get(diff)
        except NotFound:
            job = None
        if job is None or job.operation != DIFF_OPERATION:
            raise NotFound(f"no diff {diff}; start one with Diff")
        who = await guard.caller()
        await authorize(polkit=who.uid != job.caller_uid)
        if offset >= MAX_ROWS:
            return []
        return [[path, change] for path, change in
                await asyncio.to_thread(self._diffs.page, diff, offset, limit)]

    @method()
    @exported(Action.SNAPSHOTS_UNDO, expensive=True)
    async def UndoChange(self, snapshot_id: "s", paths: "aay") -> "o":
        """Make `paths` (relative to the config's tree; b"." = all of it) what they are
        in the snapshot."""
        decoded = []
        for p in paths:
            rel = os.fsdecode(bytes(p))
            if not rel:
                raise InvalidArguments("an empty path; use '.' for the whole tree")
            split_rel(rel)
            decoded.append(rel)
        req = UndoRequest(snapshot=check_snapshot_id(snapshot_id), paths=tuple(decoded))
        self._engine.get_snapshot(req.snapshot)  # NotFound before asking polkit
        who = await authorize(req)

        async def run(job: JobContext) -> dict[str, Any]:
            loop = asyncio.get_running_loop()
            last = [time.monotonic()]

            def progress(fraction: float, path: str) -> None:
                # At most one wake-up of the bus loop per PROGRESS_EVERY seconds (the
                # job's signals are throttled anyway): a short undo pays for none.
                now = time.monotonic()
                if now - last[0] >= PROGRESS_EVERY:
                    last[0] = now
                    loop.call_soon_threadsafe(job.progress, fraction, shown(path))

            result = await asyncio.to_thread(self._engine.undo, req.snapshot,
                                             list(req.paths), progress)
            data = result.model_dump(mode="json")
            # A job's result is JSON in the store and `s` on the bus: names that aren't
            # UTF-8 are shown with \xNN escapes there.
            data["paths"] = [shown(p) for p in result.paths]
            data["skipped"] = [shown(p) for p in result.skipped]
            return data

        job = self._jobs.start("snapshots.undo", who.uid, run, exclusive="system")
        return job_path(job.id)

    @method()
    @exported(Action.SNAPSHOTS_ROLLBACK, expensive=True)
    async def Rollback(self, snapshot_id: "s") -> "o":
        """The config's tree becomes the snapshot; Result.reboot_required says whether a
        reboot finishes it (the running root) and Result.previous keeps what was live."""
        snap = check_snapshot_id(snapshot_id)
        self._engine.get_snapshot(snap)
        who = await authorize(SnapshotRef(snapshot=snap))

        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.1, f"rolling back to {snap}")
            result = await asyncio.to_thread(self._engine.rollback, snap)
            return result.model_dump(mode="json")

        job = self._jobs.start("snapshots.rollback", who.uid, run, exclusive="system")
        return job_path(job.id)

    @method()
    @exported(Action.SNAPSHOTS_DELETE, expensive=True)
    async def Cleanup(self, config: "s") -> "o":
        """Apply the config's retention now (number, timeline and free-space limits)."""
        name = check_config_name(config)
        self._engine.config(name)
        who = await authorize(ConfigRef(config=name))

        async def run(job: JobContext) -> dict[str, Any]:
            job.progress(0.1, f"cleaning up {name}")
            result = await asyncio.to_thread(self._engine.cleanup, name)
            return result.model_dump(mode="json")

        job = self._jobs.start("snapshots.cleanup", who.uid, run,
                               exclusive=f"snapshots.cleanup.{name}")
        return job_path(job.id)

    # --- browse mounts ------------------------------------------------------------------

    @method()
    @exported(Action.SNAPSHOTS_BROWSE, expensive=True)
    async def MountSnapshot(self, snapshot_id: "s") -> "s":
        """Mount the snapshot ro,nosuid,nodev,noexec under the daemon's 0700 mount
        directory and return the path; released when every caller that asked has left
        the bus, by UnmountSnapshot, on delete and when the daemon stops."""
        snap = check_snapshot_id(snapshot_id)
        self._engine.get_snapshot(snap)  # NotFound before asking polkit
        who = await authorize(SnapshotRef(snapshot=snap))
        path = await asyncio.to_thread(self._engine.mount_snapshot, snap)
        self._mount_owners.setdefault(snap, set()).add(who.unique_name)
        return str(path)

    @method()
    @exported(Action.SNAPSHOTS_BROWSE)
    async def UnmountSnapshot(self, snapshot_id: "s") -> None:
        snap = check_snapshot_id(snapshot_id)
        await authorize(SnapshotRef(snapshot=snap))
        await asyncio.to_thread(self._engine.umount_snapshot, snap)
        self._mount_owners.pop(snap, None)

    def _caller_left(self, unique_name: str) -> None:
        for snap, owners in list(self._mount_owners.items()):
            owners.discard(unique_name)
            if not owners:
                del self._mount_owners[snap]
                task = asyncio.get_running_loop().create_task(self._release(snap))
                task.add_done_callback(_log_failure)

    async def _release(self, snap: str) -> None:
        # Lazily: the caller is gone, a shell of someone else's inside keeps its view.
        with contextlib.suppress(NotFound):  # unmounted meanwhile (UnmountSnapshot, delete)
            await asyncio.to_thread(self._engine.umount_snapshot, snap, True)

    async def release_mounts(self) -> None:
        """At start (left by a daemon that was killed) and at stop."""
        self._mount_owners.clear()
        released = await asyncio.to_thread(self._engine.release_mounts)
        if released:
            log.info("snapshots: unmounted browse mounts %s", ", ".join(released))


def _log_failure(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("releasing a snapshot mount failed", exc_info=task.exception())
