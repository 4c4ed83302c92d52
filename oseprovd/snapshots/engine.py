"""The snapshot engine: records, pre/post pairs, diff, undo, rollback, cleanup, recovery.

Collaborators come in through the constructor: configs, a repository of records, one
backend per backend name and a journal. Only snapshots recorded in the repository are
ever diffed, undone from, rolled back to or deleted, and the backend checks that what
it finds on disk is what was recorded (a subvolume a user made is refused).

Every change is journaled before it is made, under an operation id (`op`), and each
step is idempotent or checkable, so `recover(entries)` can finish or revert whatever a
killed run left.
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oseprovd.errors import Busy, InvalidArguments, NotApplicable, NotFound, OseError
from oseprovd.snapshots.backend import SnapshotBackend
from oseprovd.snapshots.errors import (
    BackendFailed,
    ConfigNotFound,
    SnapshotNotFound,
    UnsafeSnapshotPath,
)
from oseprovd.snapshots.ids import check_config_name, check_snapshot_id, make_snapshot_id
from oseprovd.snapshots.journal import JournalEntry, StepJournal
from oseprovd.snapshots.models import (
    CleanupAlgorithm,
    CleanupResult,
    DiffEntry,
    Outcome,
    RecoveryOutcome,
    RollbackResult,
    SnapshotConfig,
    SnapshotKind,
    SnapshotRecord,
    UndoResult,
)
from oseprovd.snapshots.places import open_private_dir
from oseprovd.snapshots.repository import SnapshotRepository
from oseprovd.snapshots.retention import free_space_candidates, select_victims
from oseprovd.system import mounts
from oseprovd.system.rootfs import split_rel

MAX_UNDO_PATHS = 10000
MAX_USERDATA = 32


def _utcnow() -> datetime:
    return datetime.now(UTC)


def new_op() -> str:
    return secrets.token_hex(8)


class _Recording:
    """Passes steps to the real journal and keeps this operation's own, so a failed
    rollback can be reverted at once with the same code recovery uses."""

    def __init__(self, journal: StepJournal) -> None:
        self.journal = journal
        self.steps: list[tuple[str, dict[str, Any]]] = []

    def record(self, step: str, data: dict[str, Any]) -> None:
        self.journal.record(step, data)
        self.steps.append((step, dict(data)))

    def note(self, step: str, data: dict[str, Any]) -> None:
        self.journal.note(step, data)
        self.steps.append((step, dict(data)))


Progress = Callable[[float, str], None]


class _Progressing:
    """Passes steps on, and tells `progress` when a path step starts (backends journal
    one step per path: "<backend>.undo.path" notes or "copy.restore.*" records)."""

    def __init__(self, journal: StepJournal, progress: Progress, total: int) -> None:
        self.journal = journal
        self.progress = progress
        self.total = max(total, 1)
        self.done = 0

    def record(self, step: str, data: dict[str, Any]) -> None:
        self.journal.record(step, data)
        self._step(step, data)

    def note(self, step: str, data: dict[str, Any]) -> None:
        self.journal.note(step, data)
        self._step(step, data)

    def _step(self, step: str, data: dict[str, Any]) -> None:
        if step.endswith(".path") or step.startswith("copy.restore."):
            self.progress(min(self.done / self.total, 1.0), str(data.get("path", "")))
            self.done += 1


class PrePost:
    """Handed to the body of `pre_post`: call `will_change(paths)` before changing them
    (the copy backend saves them then; btrfs has the whole subvolume already)."""

    def __init__(self, engine: SnapshotEngine, pre: SnapshotRecord) -> None:
        self.engine = engine
        self.pre = pre
        self.post: SnapshotRecord | None = None

    def will_change(self, paths: Sequence[str], created: bool = True) -> None:
        self.engine.will_change(self.pre.id, paths, created)


class SnapshotEngine:
    def __init__(self, configs: Mapping[str, SnapshotConfig], repo: SnapshotRepository,
                 backends: Mapping[str, SnapshotBackend], journal: StepJournal,
                 clock: Callable[[], datetime] = _utcnow,
                 on_created: Callable[[SnapshotRecord], None] | None = None,
                 on_deleted: Callable[[list[str]], None] | None = None,
                 mounts_dir: Path | None = None, proc: Path = Path("/proc")) -> None:
        """`on_created`/`on_deleted` are told of every snapshot made or removed, also
        those made by other engines through pre_post and by rollback and cleanup (the
        bus layer turns them into SnapshotCreated/SnapshotsDeleted signals). They are
        called in the engine's thread and must not raise. `mounts_dir` (the daemon's
        own, made 0700) holds the browse mounts; without it nothing is mounted. `proc`
        is where the daemon reads its own mounts (not a target root's /proc)."""
        self.mounts_dir = Path(os.path.realpath(mounts_dir)) if mounts_dir else None
        self.proc = proc
        self.on_created = on_created
        self.on_deleted = on_deleted
        self.configs = dict(configs)
        self.repo = repo
        self.backends = dict(backends)
        self.journal = journal
        self.clock = clock
        self._lock = threading.RLock()

    # -- lookups -------------------------------------------------------------------

    def list_configs(self) -> list[SnapshotConfig]:
        return [self.configs[n] for n in sorted(self.configs)]

    def config(self, name: str) -> SnapshotConfig:
        check_config_name(name)
        try:
            return self.configs[name]
        except KeyError:
            raise ConfigNotFound(f"no snapshot config {name!r}; see ListConfigs") from None

    def backend(self, config: SnapshotConfig) -> SnapshotBackend:
        try:
            return self.backends[config.backend]
        except KeyError:
            raise InvalidArguments(f"config {config.name}: backend {config.backend!r} is "
                                   "not available on this system") from None

    def list_snapshots(self, config: str) -> list[SnapshotRecord]:
        self.config(config)
        return sorted(self.repo.list(config), key=lambda r: r.number)

    def get_snapshot(self, snap_id: str) -> SnapshotRecord:
        record = self.repo.get(check_snapshot_id(snap_id))
        if record is None:
            raise SnapshotNotFound(f"no recorded snapshot {snap_id}; see ListSnapshots")
        return record

    def _checked(self, snap_id: str) -> tuple[SnapshotConfig, SnapshotBackend, SnapshotRecord]:
        record = self.get_snapshot(snap_id)
        config = self.config(record.config)
        backend = self.backend(config)
        backend.verify(config, record)
        return config, backend, record

    def _free_number(self, config: SnapshotConfig, backend: SnapshotBackend) -> int:
        """The next number whose place is free. A place already taken (a leftover, or
        made by hand) is never ours to reuse or to clean up: it is skipped, so recovery
        may delete whatever it finds at a place the engine journaled."""
        number = max((r.number for r in self.repo.list(config.name)), default=0) + 1
        while backend.describe(config, make_snapshot_id(config.name, number)) is not None:
            number += 1
        return number

    # -- create / delete -------------------------------------------------------------

    def create_snapshot(self, config: str, description: str = "",
                        userdata: Mapping[str, str] | None = None, *,
                        kind: SnapshotKind = "single", pre_id: str | None = None,
                        job_id: int | None = None, important: bool = False,
                        cleanup: CleanupAlgorithm = "") -> SnapshotRecord:
        cfg = self.config(config)
        backend = self.backend(cfg)
        userdata = dict(userdata or {})
        if len(userdata) > MAX_USERDATA:
            raise InvalidArguments(f"at most {MAX_USERDATA} userdata keys")
        with self._lock:
            backend.prepare(cfg)
            number = self._free_number(cfg, backend)
            snap_id = make_snapshot_id(cfg.name, number)
            # Validated before anything is made, so a bad description leaves no orphan.
            record = SnapshotRecord(
                id=snap_id, config=cfg.name, number=number, backend=cfg.backend, kind=kind,
                pre_id=pre_id, created=self.clock(), description=description,
                userdata=userdata, job_id=job_id, important=important, cleanup=cleanup,
            )
            op = new_op()
            begin = {"op": op, "config": cfg.name, "snapshot": snap_id}
            self.journal.record("snapshot.create", begin)
            try:
                created = backend.create(cfg, snap_id)
                record = record.model_copy(update={"uuid": created.uuid,
                                                   "size": created.size})
                self.repo.add(record)
            except Exception:
                self._recover_create(op, begin)  # remove what was made, if anything
                raise
            self.journal.record("snapshot.created", {"op": op})
            if cfg.whole_paths:
                backend.will_change(cfg, record, cfg.whole_paths, True)
            self._created(record)
            return record

    def delete_snapshots(self, ids: Sequence[str]) -> list[str]:
        records = [self.get_snapshot(i) for i in ids]  # all valid, or nothing is done
        deleted = []
        with self._lock:
            for record in records:
                config = self.config(record.config)
                backend = self.backend(config)
                backend.verify(config, record)
                self._unmount_for_delete(record.id)
                op = new_op()
                self.journal.record("snapshot.delete", {"op": op, "config": config.name,
                                                        "snapshot": record.id})
                backend.delete(config, record)
                self.repo.delete(record.id)
                self.journal.record("snapshot.deleted", {"op": op})
                deleted.append(record.id)
        if deleted and self.on_deleted is not None:
            self.on_deleted(deleted)
        return deleted

    def _created(self, record: SnapshotRecord) -> None:
        if self.on_created is not None:
            self.on_created(record)

    # -- pre/post --------------------------------------------------------------------

    @contextmanager
    def pre_post(self, config: str, description: str, job_id: int | None = None,
                 important: bool = True) -> Iterator[PrePost]:
        """Around a mutating job: a "pre" snapshot before, a "post" one after (also when
        the job fails), for backends that snapshot a whole tree."""
        pre = self.create_snapshot(config, description, kind="pre", job_id=job_id,
                                   important=important, cleanup="number")
        pair = PrePost(self, pre)
        try:
            yield pair
        finally:
            if self.config(config).backend != "copy":
                pair.post = self.create_snapshot(config, description, kind="post",
                                                 pre_id=pre.id, job_id=job_id,
                                                 important=important, cleanup="number")

    def will_change(self, snap_id: str, paths: Sequence[str], created: bool = True) -> None:
        config, backend, record = self._checked(snap_id)
        for p in paths:
            split_rel(p)
        with self._lock:
            backend.will_change(config, record, paths, created)

    # -- diff / undo / rollback ------------------------------------------------------

    def diff(self, snap_id: str, other: str | None = None) -> Iterator[DiffEntry]:
        """What changed from `snap_id` to `other` (a later snapshot, or the live tree
        when None), streamed."""
        config, backend, record = self._checked(snap_id)
        other_record = None
        if other is not None:
            _, _, other_record = self._checked(other)
            if other_record.config != record.config:
                raise InvalidArguments("both snapshots must belong to the same config")
        return backend.diff(config, record, other_record)

    def undo(self, snap_id: str, paths: Sequence[str],
             progress: Progress | None = None) -> UndoResult:
        """Make `paths` (relative to the config's tree; "" or "." = all of it) in the
        live tree what they are in the snapshot. `progress(fraction, path)` is called
        as each path starts."""
        if not paths or len(paths) > MAX_UNDO_PATHS:
            raise InvalidArguments(f"give 1 to {MAX_UNDO_PATHS} paths to undo")
        clean = ["/".join(split_rel(p)) for p in paths]
        config, backend, record = self._checked(snap_id)
        with self._lock:
            op = new_op()
            self.journal.record("undo.begin", {"op": op, "config": config.name,
                                               "snapshot": record.id, "paths": clean})
            try:
                journal: StepJournal = (self.journal if progress is None
                                    else _Progressing(self.journal, progress, len(clean)))
                result = backend.undo(config, record, clean, op, journal)
            except BaseException:
                backend.cleanup_undo(config, op, clean)
                self.journal.record("undo.failed", {"op": op})
                raise
            self.journal.record("undo.done", {"op": op})
            return result

    def rollback(self, snap_id: str) -> RollbackResult:
        config, backend, record = self._checked(snap_id)
        with self._lock:
            op = new_op()
            previous = make_snapshot_id(config.name, self._free_number(config, backend))
            journal = _Recording(self.journal)
            journal.record("rollback.begin", {
                "op": op, "config": config.name, "snapshot": record.id,
                "previous": previous,
            })
            try:
                result = backend.rollback(config, record, op, journal, previous)
            except Exception:
                self._recover_rollback(op, journal.steps[0][1], journal.steps)
                raise
            if result.previous is not None:
                self._record_previous(config, backend, record, result.previous)
            self.journal.record("rollback.done", {"op": op})
            return result

    def _record_previous(self, config: SnapshotConfig, backend: SnapshotBackend,
                         target: SnapshotRecord, previous: str) -> None:
        """Record what was live before a swap rollback, as an important snapshot."""
        if self.repo.get(previous) is not None:
            return
        saved = backend.describe(config, previous)
        if saved is None:
            return
        _, number = previous.rsplit("-", 1)
        record = SnapshotRecord(
            id=previous, config=config.name, number=int(number), backend=config.backend,
            created=self.clock(), description=f"before rollback to {target.id}",
            important=True, cleanup="number", uuid=saved.uuid,
        )
        self.repo.add(record)
        self._created(record)

    # -- browse mounts ---------------------------------------------------------------

    def _mounts_dir(self) -> Path:
        if self.mounts_dir is None:
            raise NotApplicable("this daemon has no directory for snapshot mounts")
        return self.mounts_dir

    def mount_point(self, snap_id: str) -> Path:
        return self._mounts_dir() / check_snapshot_id(snap_id)

    def mounted(self) -> dict[str, frozenset[str]]:
        """Snapshot ids mounted for browsing now, with their mount options as the
        kernel reports them."""
        if self.mounts_dir is None:
            return {}
        found = mounts.mounts_under(self.mounts_dir, mounts.read_mountinfo(self.proc))
        return {p.name: opts for p, opts in found.items()}

    def mount_snapshot(self, snap_id: str) -> Path:
        """Mount the recorded snapshot read-only, nosuid, nodev, noexec at
        <mounts_dir>/<id> (inside a 0700 directory of the daemon's), or return where it
        is mounted already. Only the backend's checked snapshot tree is bound."""
        config, backend, record = self._checked(snap_id)
        target = self.mount_point(record.id)
        with self._lock:
            if record.id in self.mounted():
                return target
            src = backend.open_browse(config, record)
            try:
                parent = open_private_dir(self._mounts_dir(), create=True)
                try:
                    dst = self._open_mount_dir(parent, record.id)
                    try:
                        mounts.bind_readonly(src, dst)
                    except OSError as exc:
                        raise BackendFailed(f"mounting {record.id}: {exc.strerror}") from None
                    finally:
                        os.close(dst)
                finally:
                    os.close(parent)
            finally:
                os.close(src)
            options = self.mounted().get(record.id, frozenset())
            if not mounts.BROWSE_OPTIONS.issubset(options):
                self._unmount(record.id, lazy=True)
                raise BackendFailed(f"{target} is mounted with {','.join(sorted(options))},"
                                    " not ro,nosuid,nodev,noexec; taken away again")
            return target

    def _open_mount_dir(self, parent: int, name: str) -> int:
        with suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=parent)
        except OSError as exc:
            raise UnsafeSnapshotPath(f"{self._mounts_dir()}/{name}: {exc.strerror}") from None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            os.close(fd)
            raise UnsafeSnapshotPath(f"{self._mounts_dir()}/{name} is not ours with mode 0700")
        return fd

    def umount_snapshot(self, snap_id: str, lazy: bool = False) -> None:
        """Take a browse mount away. A mount in use (a shell inside it) is Busy, unless
        `lazy`: then it is detached now and goes when its last user leaves."""
        check_snapshot_id(snap_id)
        with self._lock:
            if snap_id not in self.mounted():
                raise NotFound(f"snapshot {snap_id} is not mounted")
            self._unmount(snap_id, lazy=lazy)

    def release_mounts(self) -> list[str]:
        """Detach every browse mount (lazily: a process inside keeps its view until it
        leaves) and remove the mount points; at daemon start and stop."""
        with self._lock:
            ids = sorted(self.mounted())
            for snap_id in ids:
                self._unmount(snap_id, lazy=True)
            return ids

    def _unmount(self, snap_id: str, lazy: bool) -> None:
        target = self.mount_point(snap_id)
        try:
            mounts.unmount(target, lazy=lazy)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise Busy(f"{target} is in use; leave it and try again") from None
            raise BackendFailed(f"unmounting {snap_id}: {exc.strerror}") from None
        with suppress(OSError):
            os.rmdir(target)

    def _unmount_for_delete(self, snap_id: str) -> None:
        if snap_id in self.mounted():
            self._unmount(snap_id, lazy=False)

    # -- retention -------------------------------------------------------------------

    def timeline_snapshot(self, config: str) -> SnapshotRecord | None:
        cfg = self.config(config)
        if not cfg.retention.timeline_create:
            return None
        return self.create_snapshot(config, "timeline", cleanup="timeline")

    def cleanup(self, config: str) -> CleanupResult:
        cfg = self.config(config)
        backend = self.backend(cfg)
        records = self.list_snapshots(cfg.name)
        now = self.clock()
        victims = select_victims(records, cfg.retention, now)
        deleted = self.delete_snapshots(victims) if victims else []
        if cfg.retention.free_limit > 0:
            left = [r for r in records if r.id not in deleted]
            for group in free_space_candidates(left, cfg.retention, now):
                if backend.free_fraction(cfg) >= cfg.retention.free_limit:
                    break
                deleted += self.delete_snapshots(group)
        return CleanupResult(config=cfg.name, deleted=tuple(deleted),
                             kept=len(records) - len(deleted))

    # -- recovery --------------------------------------------------------------------

    def recover(self, entries: Iterable[JournalEntry]) -> list[RecoveryOutcome]:
        """Finish or revert every operation in `entries` that has no end step."""
        ops: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for step, data in entries:
            op = data.get("op")
            if isinstance(op, str):
                ops.setdefault(op, []).append((step, data))
        outcomes = []
        with self._lock:
            for op, steps in ops.items():
                try:
                    outcome = self._recover_op(op, steps)
                except (OseError, OSError, KeyError, ValueError) as exc:
                    # One bad operation must not stop the others (nor the daemon).
                    outcome = RecoveryOutcome(op=op, action=steps[0][0], outcome="failed",
                                              message=str(exc)[:500])
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    _ENDS = {
        "snapshot.create": {"snapshot.created"},
        "snapshot.delete": {"snapshot.deleted"},
        "undo.begin": {"undo.done", "undo.failed"},
        "rollback.begin": {"rollback.done", "rollback.reverted"},
    }

    @classmethod
    def pending(cls, entries: Iterable[JournalEntry]) -> list[str]:
        """Operations in `entries` without an end step. When none is left after
        `recover`, the journal may be emptied (FileJournal.clear)."""
        ops: dict[str, tuple[str, set[str]]] = {}
        for step, data in entries:
            op = data.get("op")
            if isinstance(op, str):
                ops.setdefault(op, (step, set()))[1].add(step)
        return [op for op, (first, names) in ops.items()
                if not names & cls._ENDS.get(first, set())]

    def _recover_op(self, op: str,
                    steps: list[tuple[str, dict[str, Any]]]) -> RecoveryOutcome | None:
        names = {s for s, _ in steps}
        begin = steps[0][1]
        kind = steps[0][0]
        if names & self._ENDS.get(kind, set()):
            return None
        if kind == "snapshot.create":
            return self._recover_create(op, begin)
        if kind == "snapshot.delete":
            return self._recover_delete(op, begin)
        if kind == "undo.begin":
            return self._recover_undo(op, begin)
        if kind == "rollback.begin":
            return self._recover_rollback(op, begin, steps)
        return None

    def _recover_create(self, op: str, begin: dict[str, Any]) -> RecoveryOutcome:
        config = self.config(str(begin["config"]))
        backend = self.backend(config)
        snap_id = check_snapshot_id(str(begin["snapshot"]))
        record = self.repo.get(snap_id)
        outcome: Outcome
        if record is None:
            saved = backend.describe(config, snap_id)
            if saved is not None:  # made but never recorded: ours, so remove it
                _, number = snap_id.rsplit("-", 1)
                backend.delete(config, SnapshotRecord(
                    id=snap_id, config=config.name, number=int(number),
                    backend=config.backend, created=self.clock(), uuid=saved.uuid))
            outcome = "reverted"
        else:
            outcome = "finished"
        self.journal.record("snapshot.created", {"op": op})
        return RecoveryOutcome(op=op, action="create", outcome=outcome)

    def _recover_delete(self, op: str, begin: dict[str, Any]) -> RecoveryOutcome:
        config = self.config(str(begin["config"]))
        backend = self.backend(config)
        record = self.repo.get(check_snapshot_id(str(begin["snapshot"])))
        if record is not None:
            if backend.describe(config, record.id) is not None:
                backend.delete(config, record)
            self.repo.delete(record.id)
        self.journal.record("snapshot.deleted", {"op": op})
        return RecoveryOutcome(op=op, action="delete", outcome="finished")

    def _recover_undo(self, op: str, begin: dict[str, Any]) -> RecoveryOutcome:
        config = self.config(str(begin["config"]))
        backend = self.backend(config)
        record = self.get_snapshot(str(begin["snapshot"]))
        paths = [str(p) for p in begin["paths"]]
        backend.verify(config, record)
        backend.undo(config, record, paths, op, self.journal)  # idempotent: run again
        backend.cleanup_undo(config, op, paths)
        self.journal.record("undo.done", {"op": op})
        return RecoveryOutcome(op=op, action="undo", outcome="finished")

    def _recover_rollback(self, op: str, begin: dict[str, Any],
                          steps: Sequence[tuple[str, dict[str, Any]]]) -> RecoveryOutcome:
        config = self.config(str(begin["config"]))
        backend = self.backend(config)
        record = self.get_snapshot(str(begin["snapshot"]))
        outcome = backend.recover(config, record, op, steps, self.journal)
        if outcome.outcome == "finished":
            self._record_previous(config, backend, record,
                                  check_snapshot_id(str(begin["previous"])))
            self.journal.record("rollback.done", {"op": op})
        else:
            self.journal.record("rollback.reverted", {"op": op})
        return outcome
