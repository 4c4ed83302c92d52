"""The factory reset engine: baseline, analyze, preview, execute, roll back, recover.

Synchronous (the daemon runs it in a worker thread); no D-Bus. Collaborators come in
through the constructor: the target root, the plan store, the baseline repository and
the snapshot engine with the name of the snapshot config that covers the root. Each
mutating call takes a `Journal` (record(step, data), durable before it returns): the
job's step journal in the daemon (`JobJournal`), a FileJournal for `osectl recovery`.

Execution order, journaled step by step before each is taken:
  reset.begin -> snapshot created (reset.snapshot) -> every rollback path saved
  (reset.save / reset.saved) -> batches of removals, deepest paths first
  (reset.delete, one entry per batch) -> reset.done.
Every step is idempotent or checkable, so `resume` runs it again to its end and
`rollback` puts back whatever the rollback point holds.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from oseprovd.discovery.fsread import MountTable
from oseprovd.errors import Busy, Cancelled, InvalidArguments, NotApplicable, OseError
from oseprovd.reset import baseline as baseline_mod
from oseprovd.reset import conffiles, dpkgdb, reinstall
from oseprovd.reset.accounts import USER_NAME, AccountTool, user_paths
from oseprovd.reset.baseline import BaselineRepository
from oseprovd.reset.errors import DigestMismatch, ExecutionNotFound, PlanNotFound
from oseprovd.reset.models import (
    CLASSES,
    RISKS,
    AnalyzeResult,
    Baseline,
    DiskUsage,
    ExecuteOptions,
    ExecuteResult,
    ExecutionRecord,
    ExecutionState,
    KeptPackage,
    PackageChange,
    Plan,
    PlanItem,
    RecoveryDecision,
    ResetRollbackResult,
    Risk,
    Selection,
    SkippedItem,
    Totals,
)
from oseprovd.reset.packages import STATE_PATHS, PackageTool, package_paths
from oseprovd.reset.planstore import PlanStore, Row, dumps
from oseprovd.reset.profiles import Profile, ProfileCatalog
from oseprovd.reset.remover import ALWAYS_REFUSED, Planned, Remover, refused_reason
from oseprovd.reset.scan import (
    RISK_ORDER,
    Anchor,
    Filters,
    ScanResult,
    ScanSpec,
    exit_with,
    keep_newest,
    scan,
)
from oseprovd.reset.skel import copy_skel, skel_paths
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.journal import Journal, JournalEntry, MemoryJournal
from oseprovd.snapshots.models import RollbackResult
from oseprovd.system.rootfs import TargetRoot, split_rel

log = logging.getLogger(__name__)
PLAN_ID_CHARS = frozenset("0123456789abcdef")
MAX_PAGE = 10000
DELETE_BATCH = 512
SAVE_BATCH = 2000
MAX_SKIPPED_REPORTED = 1000
UNDO_CHUNK = 10000
DAY_NS = 86400 * 10**9

Progress = Callable[[float, str], None]


def _now() -> datetime:
    return datetime.now(UTC)


def check_plan_id(plan_id: str) -> str:
    if not isinstance(plan_id, str) or len(plan_id) != 16 or not set(plan_id) <= PLAN_ID_CHARS:
        raise InvalidArguments(f"invalid plan id {plan_id!r}: 16 hex digits")
    return plan_id


def check_execution_id(exec_id: str) -> str:
    if (not isinstance(exec_id, str) or len(exec_id) != 17 or exec_id[0] != "x"
            or not set(exec_id[1:]) <= PLAN_ID_CHARS):
        raise InvalidArguments(f"invalid execution id {exec_id!r}")
    return exec_id


class JobJournal:
    """A Journal over the job manager's step journal (JobContext.step(kind, **data))."""

    def __init__(self, step: Callable[..., Any]) -> None:
        self._step = step

    def record(self, step: str, data: dict[str, Any]) -> None:
        self._step(step, **data)


class StepLike(Protocol):
    kind: str
    data: dict[str, Any]


def entries_from_steps(steps: Iterable[StepLike]) -> list[JournalEntry]:
    """A job's stored steps (JobContext.steps(), JobStep) as journal entries for
    `decisions` and `resume`."""
    return [(s.kind, dict(s.data)) for s in steps]


class ResetEngine:
    def __init__(self, root: TargetRoot, store: PlanStore, baselines: BaselineRepository,
                 snapshots: SnapshotEngine | None, *, snapshot_config: str = "root",
                 state_dir: Path | None = None, profiles: ProfileCatalog | None = None,
                 proc: Path = Path("/proc"), workers: int | None = None,
                 clock: Callable[[], datetime] = _now,
                 packages: PackageTool | None = None,
                 accounts: AccountTool | None = None,
                 before_remove: Callable[[str], None] | None = None) -> None:
        """`state_dir` (and the snapshot store) are never touched by a reset;
        `workers` > 1 spreads big walks over processes; `before_remove(rel)` is a
        test hook called between an item's last check and its removal."""
        self.root = root
        self.store = store
        self.baselines = baselines
        self.snapshots = snapshots
        self.snapshot_config = snapshot_config
        self.state_dir = state_dir
        self.profiles = profiles or ProfileCatalog(root)
        self.proc = proc
        self.workers = workers if workers is not None else min(2, os.cpu_count() or 1)
        self.clock = clock
        self.before_remove = before_remove
        self.packages = packages
        self.accounts = accounts
        # one change at a time (the bus layer's exclusive jobs say so too; this holds
        # for osectl recovery and tests that call the engine directly)
        self._changing = threading.RLock()
        self._pool: Executor | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _executor(self) -> Executor | None:
        if self.workers <= 1:
            return None
        if self._pool is None:
            # forkserver: the daemon has threads, and fork() with threads is unsafe
            ctx = get_context("forkserver")
            ctx.set_forkserver_preload(["oseprovd.reset.scan"])
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                             initializer=exit_with, initargs=(os.getpid(),))
        return self._pool

    # -- baseline --------------------------------------------------------------------

    def capture_baseline(self) -> Baseline:
        """Capture (and store) the baseline; on a btrfs root also take an important
        snapshot of it, so the whole root can be rolled back to this moment."""
        b = baseline_mod.capture(self.root, self.clock)
        if self._btrfs_root():
            assert self.snapshots is not None
            rec = self.snapshots.create_snapshot(
                self.snapshot_config, "factory baseline (ose reset)",
                {"ose.reset": "baseline"}, important=True)
            b = b.model_copy(update={"snapshot": rec.id})
        self.baselines.save(b)
        return b

    def _btrfs_root(self) -> bool:
        if self.snapshots is None:
            return False
        try:
            cfg = self.snapshots.config(self.snapshot_config)
        except OseError:
            return False
        return cfg.backend == "btrfs"

    def baseline_snapshot(self) -> str | None:
        """The baseline's btrfs snapshot if it is still there, else None."""
        b = self.baselines.load()
        if b is None or b.snapshot is None or not self._btrfs_root():
            return None
        assert self.snapshots is not None
        try:
            self.snapshots.get_snapshot(b.snapshot)
        except OseError:
            return None
        return b.snapshot

    def rollback_to_baseline(self) -> RollbackResult:
        """The other factory reset, on btrfs: the root back to the snapshot taken
        with the baseline (the snapshot engine's rollback: the default subvolume for
        the running root, `reboot_required`; a swap for another subvolume). What is
        live now is kept as the snapshot engine's `previous` snapshot."""
        snap = self.baseline_snapshot()
        if snap is None:
            raise NotApplicable("no baseline snapshot: capture the baseline on a btrfs "
                                "root to have one")
        assert self.snapshots is not None
        with self._exclusive():
            return self.snapshots.rollback(snap)

    def baseline(self) -> Baseline:
        return self.baselines.load() or baseline_mod.distribution(self.root, self.clock)

    def list_profiles(self) -> list[Profile]:
        return self.profiles.list()

    # -- places ----------------------------------------------------------------------

    def _rel_of(self, host: Path) -> str | None:
        try:
            rel = Path(host).resolve().relative_to(self.root.path)
        except ValueError:
            return None
        return "" if str(rel) == "." else str(rel)

    def refused(self) -> frozenset[str]:
        out = set(ALWAYS_REFUSED)
        extra: list[Path] = []
        if self.state_dir is not None:
            extra.append(self.state_dir)
        if self.snapshots is not None:
            extra.extend(c.snapshot_dir for c in self.snapshots.list_configs())
        for p in extra:
            rel = self._rel_of(p)
            if rel is not None:
                out.add(rel)
        return frozenset(out)

    def _mount_table(self) -> MountTable:
        return MountTable.load(self.proc)

    def mount_rels(self) -> frozenset[str]:
        out = set()
        for e in self._mount_table().entries:
            rel = self._rel_of(Path(e.mountpoint)) if e.mountpoint.startswith("/") else None
            if rel:
                out.add(rel)
        return frozenset(out)

    def _homes(self, people_only: bool = False) -> list[str]:
        users, _ = baseline_mod.read_accounts(self.root)
        homes = []
        for u in users:
            person = 1000 <= u.id < 65534
            if (person or (u.id == 0 and not people_only)) and u.home.startswith("/"):
                try:
                    rel = self.root.resolve_rel(u.home)
                except InvalidArguments:
                    continue
                # a "home" at the top (/, /etc, /srv, /var...) is a system tree, not
                # a person's: never cleaned as a home (root's /root excepted)
                if "/" not in rel and not (u.id == 0 and rel == "root"):
                    continue
                if rel and rel not in homes:
                    homes.append(rel)
        return homes

    def _expand(self, pattern: str, homes: Sequence[str],
                user_homes: Sequence[str]) -> list[str]:
        """A rule path to the trees it names: {home} for each home, {user_home} for
        people's homes, globs matched component by component on directories only
        (never through a symlink)."""
        for key, values in (("{home}", homes), ("{user_home}", user_homes)):
            if key in pattern:
                out: list[str] = []
                for h in values:
                    out.extend(self._expand(pattern.replace(key, h), (), ()))
                return out
        parts = split_rel(pattern)
        current = [""]
        for part in parts:
            nxt = []
            for base in current:
                if not any(c in part for c in "*?["):
                    nxt.append(f"{base}/{part}" if base else part)
                    continue
                try:
                    fd = self.root.open_dir(base) if base else self.root.open_dir("")
                except (OSError, OseError):
                    continue
                try:
                    for name in sorted(os.listdir(fd)):
                        if fnmatch.fnmatchcase(name, part):
                            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                            if stat.S_ISDIR(st.st_mode):
                                nxt.append(f"{base}/{name}" if base else name)
                finally:
                    os.close(fd)
            current = nxt
        return current

    # -- analyze / preview -----------------------------------------------------------

    def _anchors(self, profile: Profile, selection: Selection,
                 changes: Sequence[PackageChange] = ()) -> list[tuple[Anchor, str]]:
        homes = self._homes()
        user_homes = self._homes(people_only=True)
        now = self.clock().timestamp()
        by_rel: dict[str, tuple[Anchor, str]] = {}
        for rule in profile.rules:
            min_mtime = (int((now - rule.min_age_days * 86400) * 10**9)
                         if rule.min_age_days > 0 else None)
            for pattern in rule.paths:
                for rel in self._expand(pattern, homes, user_homes):
                    # the same tree named again (a deeper profile): the later rule wins
                    by_rel.pop(rel, None)
                    by_rel[rel] = (Anchor(rel=rel, rule=rule.id, cls=rule.cls,
                                          risk=rule.risk, names=rule.names,
                                          min_mtime_ns=min_mtime, exclude=rule.exclude,
                                          top_level=rule.top_level, skel=rule.skel,
                                          keep_newest_bytes=rule.keep_newest_bytes),
                                   rule.description)
        anchors = list(by_rel.values())
        for i, extra in enumerate(selection.add_paths):
            rel = "/".join(split_rel(extra))
            if not rel:
                raise InvalidArguments("add_paths can't name the root itself")
            anchors.append((Anchor(rel=rel, rule=f"added.{i}", cls="app", risk="destructive",
                                   names=(), min_mtime_ns=None, exclude=()),
                            f"added by the selection: /{rel}"))
        refused = self.refused()
        kept = []
        for anchor, desc in anchors:
            if refused_reason(anchor.rel, refused) is None:
                kept.append((anchor, desc))
        # /var/lib holds the state dir, so it is never a rule's tree; the purge's
        # anchor only enters the purged packages' directories (each checked here,
        # and the walk and the removal check every entry again)
        purged = _purged_data(profile, changes, refused)
        if purged is not None and purged[0].rel not in {a.rel for a, _ in kept}:
            kept.append(purged)
        return kept

    def _uids(self, names: Iterable[str]) -> tuple[int, ...]:
        users, _ = baseline_mod.read_accounts(self.root)
        by_name = {u.name: u.id for u in users}
        out = []
        for n in names:
            if n not in by_name:
                raise InvalidArguments(f"no user {n!r} on the target")
            out.append(by_name[n])
        return tuple(out)

    def _filters(self, sel: Selection) -> Filters:
        for p in (*sel.include_paths, *sel.exclude_paths):
            split_rel(p)  # ".." and NUL refused before anything is walked
        return Filters(
            include_paths=tuple("/".join(split_rel(p)) for p in sel.include_paths),
            exclude_paths=tuple("/".join(split_rel(p)) for p in sel.exclude_paths),
            include_globs=sel.include_globs, exclude_globs=sel.exclude_globs,
            classes=sel.classes, exclude_classes=sel.exclude_classes,
            uids=self._uids(sel.users) if sel.users else None,
            exclude_uids=self._uids(sel.exclude_users), max_risk=sel.max_risk)

    def _scan(self, profile: Profile, selection: Selection, collect: bool,
              changes: Sequence[PackageChange] = ()) -> tuple[
            list[tuple[Anchor, str]], ScanResult]:
        anchors = self._anchors(profile, selection, changes)
        owned = dpkgdb.Ownership.load(self.root, [a.rel for a, _ in anchors])
        spec = ScanSpec(root=str(self.root.path), anchors=tuple(a for a, _ in anchors),
                        filters=self._filters(selection), refused=self.refused(),
                        mounts=self.mount_rels(), owned=frozenset(owned.owners),
                        collect=collect)
        try:
            result = scan(spec, self._executor(), self.workers)
        except BrokenProcessPool:
            # a worker died (OOM killer, a broken install): walk in this process
            log.warning("reset scan workers failed; walking in one process")
            self._pool = None
            result = scan(spec, None, 1)
        keep_newest(spec.anchors, result, collect)
        for rel in result.owned_paths:
            for package in owned.owners.get(rel, ()):
                result.kept_packages[package] = result.kept_packages.get(package, 0) + 1
        result.owned_paths = []
        return anchors, result

    def _package_changes(self, profile: Profile, selection: Selection,
                         base: Baseline) -> tuple[list[PackageChange], int]:
        installed = dpkgdb.installed_packages(self.root)
        if not selection_packages(selection):
            return [], len(installed)
        changes = []
        if profile.packages.remove_after_baseline:
            changes = self._removals(profile, selection, base, installed)
        if profile.packages.restore_baseline:
            changes += self._installs(selection, base, installed)
        return changes, len(installed)

    def _removals(self, profile: Profile, selection: Selection, base: Baseline,
                  installed: Sequence[Any]) -> list[PackageChange]:
        known = {(p.name, p.architecture) for p in base.packages}
        changes = []
        for p in installed:
            if (p.name, p.architecture or "") in known or p.auto_installed is True:
                continue
            if p.essential or not dpkgdb.PACKAGE_NAME.fullmatch(p.name):
                continue
            if selection.packages and not _match_any(p.name, selection.packages):
                continue
            if _match_any(p.name, selection.exclude_packages):
                continue
            changes.append(PackageChange(
                action="purge" if profile.packages.purge_data else "remove", name=p.name,
                architecture=p.architecture or "", version=p.version or "",
                reason=("installed by hand after the baseline" if base.source == "captured"
                        else f"not part of the distribution's base (priority "
                             f"{p.priority or 'unknown'})")))
        if changes and self.packages is not None:
            changes = self._simulated(changes, profile.packages.purge_data)
        return changes

    def _installs(self, selection: Selection, base: Baseline,
                  installed: Sequence[Any]) -> list[PackageChange]:
        """nuclear: baseline packages not installed now, at their baseline version,
        from a .deb at hand (deb="" when there is none: listed, not installed)."""
        have = {(p.name, p.architecture or "") for p in installed}
        out = []
        for p in base.packages:
            if (p.name, p.architecture) in have or not dpkgdb.PACKAGE_NAME.fullmatch(p.name):
                continue
            if p.architecture and not dpkgdb.ARCH_NAME.fullmatch(p.architecture):
                continue
            if selection.packages and not _match_any(p.name, selection.packages):
                continue
            if _match_any(p.name, selection.exclude_packages):
                continue
            deb = reinstall.find_deb(self.root, p.name, p.version, p.architecture)
            out.append(PackageChange(
                action="install", name=p.name, architecture=p.architecture,
                version=p.version, deb=deb,
                reason=("in the baseline, removed since" if deb else
                        "in the baseline, removed since; no .deb of this version at "
                        "hand (no download): will not be installed")))
        return sorted(out, key=lambda c: (c.name, c.architecture))

    def _simulated(self, requested: list[PackageChange], purge: bool) -> list[PackageChange]:
        """What apt would really remove for the requested packages (their dependents
        and the dependencies nothing needs any more come along)."""
        assert self.packages is not None
        asked = {c.name: c for c in requested}
        out = []
        for name, arch, version in self.packages.simulate_remove(
                self.root.path, sorted(asked), purge):
            c = asked.get(name)
            out.append(c if c is not None else PackageChange(
                action="purge" if purge else "remove", name=name, architecture=arch,
                version=version, requested=False,
                reason="removed along: depends on a removed package or is no longer needed"))
        return out

    def _notes(self, profile: Profile, base: Baseline, result: ScanResult,
               changes: Sequence[PackageChange] = ()) -> list[str]:
        notes = []
        if base.snapshot is not None and self.baseline_snapshot() is not None:
            notes.append(f"btrfs: the whole root can instead be rolled back to the "
                         f"baseline's snapshot {base.snapshot} (reboot required)")
        for c in changes:
            if c.action == "install" and not c.deb:
                notes.append(f"{c.name} {c.version} ({c.architecture}) is in the baseline "
                             "and not installed; its .deb is not in apt's cache: it will "
                             "not be reinstalled (put it in /var/cache/apt/archives and "
                             "preview again)")
        if base.source == "distribution":
            notes.append(base.note or baseline_mod.DISTRIBUTION_NOTE)
        pending = [k for k, v in profile.packages.model_dump().items()
                   if v and k not in ("remove_after_baseline", "purge_data",
                                      "remove_new_users", "restore_conffiles",
                                      "restore_baseline")]
        if pending:
            notes.append("not done by this engine yet (listed, not planned): "
                         + ", ".join(pending))
        if result.owned_kept:
            names = sorted(result.kept_packages)
            notes.append(f"{result.owned_kept} entries a rule matched belong to installed "
                         f"packages ({', '.join(names[:5])}{', ...' if names[5:] else ''}) "
                         "and are kept (remove the package instead)")
        for rel in sorted(set(result.symlink_anchors)):
            notes.append(f"/{rel} is a symlink or passes through one: not walked")
        for rel in sorted(set(result.mounts_skipped)):
            notes.append(f"/{rel} is another filesystem or a mount point: not entered")
        return notes

    def _analysis(self, profile: Profile, selection: Selection, result: ScanResult,
                  base: Baseline, changes: Sequence[PackageChange],
                  anchors: Sequence[Anchor] = ()) -> AnalyzeResult:
        removed_users = self._new_users(profile, selection, base)
        by_class: dict[str, list[int]] = {c: [0, 0] for c in CLASSES}
        by_risk: dict[str, list[int]] = {r: [0, 0] for r in RISKS}
        by_rule: dict[str, list[int]] = {}
        for (cls, risk, rule), (count, used) in result.totals.items():
            for table, key in ((by_class, cls), (by_risk, risk), (by_rule, rule)):
                t = table.setdefault(key, [0, 0])
                t[0] += count
                t[1] += used
        total = [sum(v[0] for v in by_class.values()), sum(v[1] for v in by_class.values())]

        def tot(v: list[int]) -> Totals:
            return Totals(count=v[0], bytes=v[1])
        return AnalyzeResult(
            profile=profile.name, baseline_source=base.source, totals=tot(total),
            by_class={k: tot(v) for k, v in by_class.items()},
            by_risk={k: tot(v) for k, v in by_risk.items()},
            by_rule={k: tot(v) for k, v in sorted(by_rule.items())},
            kept_owned_by_package=result.owned_kept,
            kept_by_package=self._kept_by_package(result.kept_packages),
            skipped_mounts=tuple(sorted(set(result.mounts_skipped))),
            package_changes=tuple(changes),
            skel_trees=tuple(sorted({a.rel for a in anchors if a.skel}
                                    - {self._home_of(u) for u in removed_users})),
            users_removed=tuple(removed_users),
            conffiles_restored=tuple(
                (c.path, c.package, c.md5, c.deb)
                for c in (conffiles.modified(self.root, DEFAULT_CONFIG_PACKAGES
                                             if profile.packages.restore_baseline
                                             else frozenset())
                          if profile.packages.restore_conffiles else ())
                if c.package not in {ch.name for ch in changes}),  # going anyway
            baseline_rollback=self.baseline_snapshot(),
            notes=tuple(self._notes(profile, base, result, changes)))

    def _kept_by_package(self, counts: dict[str, int]) -> tuple[KeptPackage, ...]:
        """Classify what dpkg's database says these packages are: system when Essential
        or of priority required/important/standard, else app."""
        if not counts:
            return ()
        known = {p.name: p for p in dpkgdb.installed_packages(self.root)}
        out = []
        for name, count in sorted(counts.items()):
            p = known.get(name)
            priority = (p.priority or "") if p is not None else ""
            system = p is not None and dpkgdb.is_high_priority(p)
            out.append(KeptPackage(
                package=name, priority=priority, cls="system" if system else "app",
                count=count,
                reason=f"dpkg lists them for {name} (priority {priority or 'none'}"
                       f"{', Essential' if p is not None and p.essential else ''}): "
                       "kept; removing the package is what takes them"))
        return tuple(out)

    def _new_users(self, profile: Profile, selection: Selection,
                   base: Baseline) -> list[str]:
        """People's accounts (uid 1000..65533) not in the baseline, for nuclear."""
        if not profile.packages.remove_new_users:
            return []
        known = {u.name for u in base.users}
        users, _ = baseline_mod.read_accounts(self.root)
        out = []
        for u in users:
            if not 1000 <= u.id < 65534 or u.name in known:
                continue
            if not USER_NAME.fullmatch(u.name):
                continue
            if selection.users and u.name not in selection.users:
                continue
            if u.name in selection.exclude_users:
                continue
            out.append(u.name)
        return sorted(out)

    def _home_of(self, name: str) -> str:
        users, _ = baseline_mod.read_accounts(self.root)
        for u in users:
            if u.name == name and u.home.startswith("/"):
                try:
                    return self.root.resolve_rel(u.home)
                except InvalidArguments:
                    return ""
        return ""

    def analyze(self, selection: Selection) -> AnalyzeResult:
        """Totals of what `selection` would remove (nothing stored)."""
        # package changes first: the data of the packages a profile purges is walked
        profile = self.profiles.get(selection.profile)
        base = self.baseline()
        changes, _ = self._package_changes(profile, selection, base)
        anchors, result = self._scan(profile, selection, False, changes)
        return self._analysis(profile, selection, result, base, changes,
                              [a for a, _ in anchors])

    def _disk(self, anchors: Sequence[Anchor], result: ScanResult,
              packages_bytes: int = 0) -> list[DiskUsage]:
        """Per filesystem the plan touches: used now, and after the items go and the
        package changes are made (dpkg's Installed-Size of the packages removed, less
        that of those installed, counted on the filesystem holding /usr)."""
        freed: dict[int, int] = {}
        for it in result.items:
            freed[it[7]] = freed.get(it[7], 0) + it[3]
        rels = [a.rel for a in anchors]
        if packages_bytes:
            usr = self._lstat_or_none("usr")  # never followed: a symlink counts as the root
            rel = "usr" if usr is not None and stat.S_ISDIR(usr.st_mode) else ""
            st = usr if rel else os.stat(self.root.path)  # the root: the admin's path
            if st is not None:
                freed[st.st_dev] = freed.get(st.st_dev, 0) + packages_bytes
                rels.insert(0, rel)
        table = self._mount_table()
        out: dict[str, DiskUsage] = {}
        for rel in rels:
            host = self.root.host_path(rel)
            try:
                st = os.stat(host, follow_symlinks=False)
                vfs = os.statvfs(host)
            except OSError:
                continue
            mount = max((e.mountpoint for e in table.entries
                         if str(host) == e.mountpoint
                         or str(host).startswith(e.mountpoint.rstrip("/") + "/")),
                        key=len, default="/")
            if mount in out:
                continue
            used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
            out[mount] = DiskUsage(filesystem=mount, used_before=used,
                                   used_after=max(0, used - freed.get(st.st_dev, 0)),
                                   size=vfs.f_blocks * vfs.f_frsize)
        return list(out.values())

    def _removed_packages_bytes(self, changes: Sequence[PackageChange]) -> int:
        """dpkg's Installed-Size (KiB) of the packages the plan removes. Installs are
        not counted: their size is in the .deb, read only at execution."""
        gone = {(c.name, c.architecture) for c in _removals(changes)}
        if not gone:
            return 0
        return sum((p.installed_size_kib or 0) * 1024
                   for p in dpkgdb.installed_packages(self.root)
                   if (p.name, p.architecture or "") in gone)

    def preview(self, selection: Selection) -> Plan:
        """Walk, classify and store a plan; items are fetched with plan_items()."""
        profile = self.profiles.get(selection.profile)
        base = self.baseline()
        changes, installed = self._package_changes(profile, selection, base)
        anchors, result = self._scan(profile, selection, True, changes)
        analysis = self._analysis(profile, selection, result, base, changes,
                                  [a for a, _ in anchors])
        plan_id = secrets.token_hex(8)
        header = _header(selection, analysis)
        digest, count = self.store.add_items(
            plan_id, [(a.rel, a.rule, d) for a, d in anchors], result.items, header)
        risks = [r for r in RISKS if analysis.by_risk[r].count]
        if changes or analysis.users_removed:
            risks.append("destructive")
        highest: Risk = max(risks, key=lambda r: RISK_ORDER[r], default="safe")
        plan = Plan(id=plan_id, digest=digest, created=self.clock(), selection=selection,
                    analysis=analysis,
                    disk=tuple(self._disk([a for a, _ in anchors], result,
                                          self._removed_packages_bytes(changes))),
                    packages_before=installed,
                    packages_after=installed - len(_removals(changes))
                    + sum(1 for c in changes if c.action == "install" and c.deb),
                    highest_risk=highest, item_count=count)
        self.store.save_plan(plan)
        return plan

    def get_plan(self, plan_id: str) -> Plan:
        plan = self.store.get_plan(check_plan_id(plan_id))
        if plan is None:
            raise PlanNotFound(f"no plan {plan_id}; make one with Preview")
        return plan

    def plan_items(self, plan_id: str, offset: int, limit: int) -> list[PlanItem]:
        self.get_plan(plan_id)
        if offset < 0 or not 0 < limit <= MAX_PAGE:
            raise InvalidArguments(f"offset >= 0 and 1 <= limit <= {MAX_PAGE}")
        anchors = self.store.anchors(plan_id)
        users, _ = baseline_mod.read_accounts(self.root)
        names = {u.id: u.name for u in users}
        out = []
        for row in self.store.rows(plan_id, offset, offset + limit):
            seq, path, kind, size, used, uid, gid, ino, dev, mtime, cls, risk, rule, a = row
            _, _, desc = anchors[a]
            owner = names.get(uid, str(uid))
            out.append(PlanItem(
                seq=seq, path=os.fsdecode(path), kind=kind,
                size=size, bytes=used, uid=uid, gid=gid, ino=ino, dev=dev, mtime_ns=mtime,
                cls=cls, risk=risk, rule=rule,
                reason=f"rule {rule} ({desc}); not owned by any package; owner {owner}",
                owner=names.get(uid, "")))
        return out

    # -- execute ---------------------------------------------------------------------

    def _planned(self, row: Row, anchors: Sequence[tuple[str, str, str]]) -> Planned:
        _seq, path, kind, size, _, uid, _, ino, dev, mtime, *_, a = row
        return Planned(rel=os.fsdecode(path), kind=kind, size=size, uid=uid, ino=ino,
                       dev=dev, mtime_ns=mtime, anchor=anchors[a][0])

    def _rollback_paths(self, plan_id: str) -> list[str]:
        """The items not inside a directory item: saving these saves exactly the plan."""
        dirs: set[str] = set()
        out = []
        for row in self.store.iter_rows(plan_id):
            rel = os.fsdecode(row[1])
            parts = rel.split("/")
            if any("/".join(parts[:i]) in dirs for i in range(1, len(parts))):
                continue
            out.append(rel)
            if row[2] == "dir":
                dirs.add(rel)
        return out

    def execute(self, plan_id: str, digest: str, options: ExecuteOptions,
                journal: Journal, *, job_id: int | None = None,
                progress: Progress | None = None,
                check_cancelled: Callable[[], None] | None = None) -> ExecuteResult:
        """Remove exactly the plan's items behind a rollback point (see the module
        doc for the steps); `dry_run` checks everything and changes nothing."""
        with self._exclusive():
            return self._execute(plan_id, digest, options, journal, job_id, progress,
                                 check_cancelled)

    def _execute(self, plan_id: str, digest: str, options: ExecuteOptions,
                 journal: Journal, job_id: int | None, progress: Progress | None,
                 check_cancelled: Callable[[], None] | None) -> ExecuteResult:
        plan = self.get_plan(plan_id)
        if not secrets.compare_digest(plan.digest, str(digest)):
            raise DigestMismatch(f"the digest does not match plan {plan_id}: preview again "
                                 "and confirm the new plan")
        if self.store.digest(plan.id, _header(plan.selection, plan.analysis)) != plan.digest:
            raise DigestMismatch(f"the stored items of plan {plan_id} are not the ones "
                                 "that were previewed; preview again")
        if plan.analysis.package_changes:
            self._check_packages(plan)
        if plan.analysis.users_removed and self.accounts is None:
            raise NotApplicable("this plan removes users and no account tool is "
                                "configured")
        exec_id = "x" + secrets.token_hex(8)
        if options.dry_run:
            journal = MemoryJournal()  # throwaway: a dry run leaves no trace
        journal.record("reset.begin", {"op": exec_id, "plan": plan_id,
                                       "digest": plan.digest, "dry_run": options.dry_run})
        if not options.dry_run:
            self.store.add_execution(ExecutionRecord(
                id=exec_id, plan=plan_id, digest=plan.digest, state="running",
                started=self.clock(), job_id=job_id))
        return self._guarded(exec_id, options.dry_run, lambda: self._run(
            plan, exec_id, journal, options.dry_run, None, False, job_id, progress,
            check_cancelled))

    def _guarded(self, exec_id: str, dry_run: bool,
                 body: Callable[[], ExecuteResult]) -> ExecuteResult:
        """A run that stops early (cancelled, an error) is recorded as interrupted or
        failed, never left `running`: it can be resumed or rolled back."""
        try:
            with self._exclusive():
                return body()
        except BaseException as exc:
            if not dry_run:
                state: ExecutionState = ("interrupted" if isinstance(exc, Cancelled)
                                         else "failed")
                self.store.update_execution(exec_id, state=state, finished=self.clock())
            raise

    def _requested(self, plan: Plan) -> list[str]:
        return sorted(c.name for c in _removals(plan.analysis.package_changes)
                      if c.requested)

    def _purge(self, plan: Plan) -> bool:
        return any(c.action == "purge" for c in plan.analysis.package_changes)

    def _check_packages(self, plan: Plan) -> None:
        """apt must still answer what the preview showed."""
        if self.packages is None:
            raise NotApplicable("this plan removes packages and no package tool is "
                                "configured; preview again with exclude_packages=['*']")
        if not self._requested(plan):
            return  # installs only: their .debs are checked again when installing
        now = self.packages.simulate_remove(self.root.path, self._requested(plan),
                                            self._purge(plan))
        planned = sorted((c.name, c.version) for c in _removals(plan.analysis.package_changes))
        if sorted((n, v) for n, _, v in now) != planned:
            raise DigestMismatch("apt would now remove other packages than the plan "
                                 "shows; preview again")

    def _restore_conffiles(self, plan: Plan, exec_id: str, journal: Journal,
                           tally: _Tally) -> list[str]:
        """Idempotent: a conffile that already has dpkg's md5sum is left alone."""
        done = []
        refused = self.refused()
        journal.record("reset.conffiles", {"op": exec_id})
        for path, package, md5, deb in plan.analysis.conffiles_restored:
            item = conffiles.ConffileRestore(path=path, package=package, md5=md5, deb=deb)
            if not deb:
                tally.count(path, f"no .deb of {package} in apt's cache: not restored", 0)
                continue
            why = refused_reason(path, refused)
            if why is not None:
                tally.count(path, why, 0)
                continue
            if conffiles.is_pristine(self.root, item):
                done.append(path)  # a resumed run: restored already
                continue
            try:
                data, mode, uid, gid = conffiles.pristine(self.root, item)
                conffiles.restore(self.root, item, data, mode, uid, gid)
            except (OSError, OseError) as exc:
                tally.count(path, f"conffile not restored: {exc}", 0)
                continue
            done.append(path)
        journal.record("reset.conffiles.done", {"op": exec_id})
        return done

    def _remove_users(self, plan: Plan, exec_id: str, journal: Journal,
                      tally: _Tally) -> None:
        """userdel each account (idempotent), then its home if the reset emptied it."""
        assert self.accounts is not None
        homes = {n: self._home_of(n) for n in plan.analysis.users_removed}
        journal.record("reset.users", {"op": exec_id, "names": list(homes)})
        for name, home in homes.items():
            self.accounts.remove_user(self.root.path, name)
            if not home or "/" not in home:
                continue
            parent, base = home.rsplit("/", 1)
            try:
                fd = self.root.open_dir(parent)
            except (OSError, OseError):
                continue
            try:
                os.rmdir(base, dir_fd=fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                tally.count(home, f"home of removed user {name} kept: {exc.strerror}", 0)
            finally:
                os.close(fd)
        journal.record("reset.users.done", {"op": exec_id})

    def _remove_packages(self, plan: Plan, exec_id: str, journal: Journal) -> list[str]:
        """Idempotent: only requested packages still installed are given to apt."""
        assert self.packages is not None
        installed = {p.name for p in dpkgdb.installed_packages(self.root)}
        names = [n for n in self._requested(plan) if n in installed]
        journal.record("reset.packages", {"op": exec_id, "names": names})
        if names:
            self.packages.remove(self.root.path, names, self._purge(plan))
        journal.record("reset.packages.done", {"op": exec_id})
        left = {p.name for p in dpkgdb.installed_packages(self.root)}
        return sorted(c.name for c in _removals(plan.analysis.package_changes)
                      if c.name not in left)

    def _install_packages(self, plan: Plan, exec_id: str,
                          journal: Journal) -> tuple[list[str], list[str]]:
        """nuclear: baseline packages back from their .debs (idempotent: what is
        installed at the baseline version already is left alone). Returns
        (installed, "name: why not" for the rest)."""
        wanted = [c for c in plan.analysis.package_changes if c.action == "install"]
        now = {(p.name, p.architecture or ""): p.version
               for p in dpkgdb.installed_packages(self.root)}
        missing = [f"{c.name}: no .deb of {c.version} at hand" for c in wanted if not c.deb]
        debs = []
        for c in wanted:
            if not c.deb or now.get((c.name, c.architecture)) == c.version:
                continue
            # checked again: the file may have gone or changed since the preview
            if reinstall.find_deb(self.root, c.name, c.version, c.architecture) != c.deb:
                missing.append(f"{c.name}: {c.deb} is gone or no longer that package")
                continue
            debs.append(c.deb)
        journal.record("reset.install", {"op": exec_id, "debs": debs})
        if debs:
            assert self.packages is not None
            try:
                self.packages.install_debs(self.root.path, debs)
            except OseError as exc:
                missing.append(f"dpkg failed: {exc}")
        journal.record("reset.install.done", {"op": exec_id})
        now = {(p.name, p.architecture or ""): p.version
               for p in dpkgdb.installed_packages(self.root)}
        done = sorted(c.name for c in wanted
                      if c.deb and now.get((c.name, c.architecture)) == c.version)
        return done, missing

    def _run(self, plan: Plan, exec_id: str, journal: Journal, dry_run: bool,
             snapshot: str | None, saved: bool, job_id: int | None,
             progress: Progress | None,
             check_cancelled: Callable[[], None] | None) -> ExecuteResult:
        tally = _Tally()
        if not dry_run:
            if snapshot is None:
                snapshot = self._create_rollback_point(plan, exec_id, journal, job_id)
            if not saved:
                self._save(plan, exec_id, snapshot, journal, tally)
                journal.record("reset.saved", {"op": exec_id})
            # what could not be saved is not removed, also when resuming
            tally.unsaved = set(self.store.unsaved(exec_id))
        restored: list[str] = []
        if plan.analysis.conffiles_restored and not dry_run:
            # before the items: light's rules remove the cached .debs they come from
            restored = self._restore_conffiles(plan, exec_id, journal, tally)
        installed: tuple[list[str], list[str]] = ([], [])
        if not dry_run and any(c.action == "install"
                               for c in plan.analysis.package_changes):
            # before the items too: light's rules remove the .debs they come from
            installed = self._install_packages(plan, exec_id, journal)
        self._remove_items(plan, exec_id, journal, dry_run, tally, progress,
                           check_cancelled)
        if not dry_run:
            for home in plan.analysis.skel_trees:
                journal.record("reset.skel", {"op": exec_id, "tree": home})
                try:
                    copied = copy_skel(self.root, home)
                except (OSError, OseError) as exc:
                    tally.count(home, f"/etc/skel not copied: {exc}", 0)
                    continue
                for rel, why in copied.failed:  # what the user may not create there
                    tally.count(f"{home}/{rel}", f"/etc/skel entry not copied as the "
                                f"home's owner: {why}", 0)
        if plan.analysis.users_removed and not dry_run:
            self._remove_users(plan, exec_id, journal, tally)
        removed_pkgs: list[str] = []
        if self._requested(plan) and not dry_run:
            removed_pkgs = self._remove_packages(plan, exec_id, journal)
        result = ExecuteResult(execution=exec_id, plan=plan.id, dry_run=dry_run,
                               removed=tally.removed, removed_bytes=tally.removed_bytes,
                               already_gone=tally.gone, skipped=tuple(tally.skipped),
                               skipped_count=tally.skipped_count, rollback_point=snapshot,
                               packages_removed=tuple(removed_pkgs),
                               packages_installed=tuple(installed[0]),
                               packages_not_installed=tuple(installed[1]),
                               conffiles_restored=tuple(restored))
        journal.record("reset.done", {"op": exec_id, "removed": tally.removed,
                                      "skipped": tally.skipped_count})
        if not dry_run:
            self.store.update_execution(exec_id, state="done", finished=self.clock(),
                                        result=result)
        return result

    def _remove_items(self, plan: Plan, exec_id: str, journal: Journal, dry_run: bool,
                      tally: _Tally, progress: Progress | None,
                      check_cancelled: Callable[[], None] | None) -> None:
        """Batches of removals, deepest paths first; each batch journaled before."""
        anchors = self.store.anchors(plan.id)
        root_fd = os.open(self.root.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        remover = Remover(root_fd, self.refused(), self.mount_rels(), dry_run,
                          self.before_remove)
        total = max(plan.item_count, 1)
        done = 0
        try:
            hi = plan.item_count
            while hi > 0:
                lo = max(0, hi - DELETE_BATCH)
                if check_cancelled is not None:
                    check_cancelled()
                journal.record("reset.delete", {"op": exec_id, "lo": lo, "hi": hi})
                for row in self.store.rows(plan.id, lo, hi, descending=True):
                    item = self._planned(row, anchors)
                    if any(item.rel == u or item.rel.startswith(u + "/")
                           for u in tally.unsaved):
                        continue
                    tally.count(item.rel, remover.remove(item), row[4])
                done += hi - lo
                hi = lo
                if progress is not None:
                    progress(done / total, f"{done} of {plan.item_count} items")
        finally:
            remover.close()
            os.close(root_fd)

    def _create_rollback_point(self, plan: Plan, exec_id: str, journal: Journal,
                               job_id: int | None) -> str:
        if self.snapshots is None:
            raise NotApplicable("no snapshot engine: a reset never runs without a "
                                "rollback point")
        cfg = self.snapshots.config(self.snapshot_config)
        if cfg.path.resolve() != self.root.path:
            raise NotApplicable(f"snapshot config {cfg.name} covers {cfg.path}, not the "
                                f"target root {self.root.path}")
        record = self.snapshots.create_snapshot(
            cfg.name, f"before reset plan {plan.id}", {"reset_execution": exec_id},
            kind="pre", job_id=job_id, important=True, cleanup="number")
        journal.record("reset.snapshot", {"op": exec_id, "snapshot": record.id})
        self.store.update_execution(exec_id, snapshot=record.id)
        return record.id

    def _lstat_or_none(self, rel: str) -> os.stat_result | None:
        try:
            return self.root.lstat(rel)
        except OseError:
            return None

    def _reachable(self, paths: Sequence[str]) -> list[str]:
        """Paths none of whose ancestors is a symlink or a non-directory (Debian's
        /var/spool/mail -> ../mail): those are saved, if at all, under their real
        name by another entry, and are not ours to restore through a link."""
        ok: dict[str, bool] = {}
        out = []
        for p in paths:
            parts = p.split("/")
            good = True
            for i in range(1, len(parts)):
                anc = "/".join(parts[:i])
                if anc not in ok:
                    try:
                        st = self.root.lstat(anc)
                    except OseError:
                        st = None
                        ok[anc] = False
                    else:
                        ok[anc] = st is None or stat.S_ISDIR(st.st_mode)
                if not ok[anc]:
                    good = False
                    break
            if good:
                out.append(p)
        return out

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._changing.acquire(blocking=False):
            raise Busy("another reset execution or rollback is running in this process")
        try:
            yield
        finally:
            self._changing.release()

    def _save_aux(self, exec_id: str, snapshot: str, paths: Sequence[str],
                  created: bool) -> None:
        """Save (and record, for a btrfs undo) what a step changes besides the
        plan's items: account files, dpkg's state, skel targets."""
        assert self.snapshots is not None
        keep = self._reachable(paths)
        self.store.add_saved(exec_id, keep)
        self.snapshots.will_change(snapshot, keep, created=created)

    def _save(self, plan: Plan, exec_id: str, snapshot: str, journal: Journal,
              tally: _Tally) -> None:
        """will_change(every rollback path); a path the snapshot engine refuses (a
        symlink on the way now) is not saved, so it is not removed either."""
        assert self.snapshots is not None
        skel_targets = [p for home in plan.analysis.skel_trees
                        for p in skel_paths(self.root, home)]
        if skel_targets:
            # first, and created=True: a restore removes what skel put into them
            journal.record("reset.save", {"op": exec_id, "skel": True})
            self._save_aux(exec_id, snapshot, skel_targets, created=True)
        if plan.analysis.conffiles_restored:
            journal.record("reset.save", {"op": exec_id, "conffiles": True})
            cpaths = [c[0] for c in plan.analysis.conffiles_restored]
            gone = [p for p in cpaths if self._lstat_or_none(p) is None]
            # a deleted conffile (nuclear: apt's, dpkg's) comes back: created=True
            self._save_aux(exec_id, snapshot, [p for p in cpaths if p not in gone],
                           created=False)
            if gone:
                self._save_aux(exec_id, snapshot, gone, created=True)
        if plan.analysis.users_removed:
            names = list(plan.analysis.users_removed)
            extra_u = user_paths(names) + [h for h in map(self._home_of, names) if h]
            journal.record("reset.save", {"op": exec_id, "users": True})
            self._save_aux(exec_id, snapshot, extra_u, created=False)
        paths = self._rollback_paths(plan.id)
        if plan.analysis.package_changes:
            extra = package_paths(self.root.path,
                                  [c.name for c in _removals(plan.analysis.package_changes)],
                                  self._purge(plan))
            new: list[str] = []
            for c in plan.analysis.package_changes:
                if c.action == "install" and c.deb:
                    try:
                        new += reinstall.deb_files(self.root, c.deb)
                    except OseError as exc:
                        tally.count(c.deb, f"not installed: {exc}", 0)
            journal.record("reset.save", {"op": exec_id, "state": True})
            # created=True: a restore also removes what apt/dpkg made in them
            self._save_aux(exec_id, snapshot, STATE_PATHS, created=True)
            self._save_aux(exec_id, snapshot, extra, created=False)
            if new:
                # created=True: a rollback removes what the install unpacked
                self._save_aux(exec_id, snapshot, sorted(set(new)), created=True)
        for i in range(0, len(paths), SAVE_BATCH):
            chunk = paths[i:i + SAVE_BATCH]
            journal.record("reset.save", {"op": exec_id, "from": i, "count": len(chunk)})
            try:
                self.snapshots.will_change(snapshot, chunk, created=False)
            except OseError:
                for p in chunk:
                    try:
                        self.snapshots.will_change(snapshot, [p], created=False)
                    except OseError as exc:
                        self.store.add_unsaved(exec_id, [p])
                        tally.count(p, f"not saved in the rollback point: {exc}", 0)

    # -- rollback / recovery ---------------------------------------------------------

    def get_execution(self, exec_id: str) -> ExecutionRecord:
        record = self.store.get_execution(check_execution_id(exec_id))
        if record is None:
            raise ExecutionNotFound(f"no reset execution {exec_id}")
        return record

    def list_executions(self) -> list[ExecutionRecord]:
        return self.store.list_executions()

    def rollback(self, exec_id: str, journal: Journal) -> ResetRollbackResult:
        """Put back every item the execution removed, from its rollback point."""
        record = self.get_execution(exec_id)
        if record.state == "rolled_back":
            raise NotApplicable(f"execution {exec_id} was rolled back already")
        if self.snapshots is None:
            raise NotApplicable("no snapshot engine to roll back with")
        with self._exclusive():
            return self._rollback(record, exec_id, journal)

    def _rollback(self, record: ExecutionRecord, exec_id: str,
                  journal: Journal) -> ResetRollbackResult:
        assert self.snapshots is not None
        snapshot = record.snapshot
        journal.record("reset.rollback.begin", {"op": exec_id, "snapshot": snapshot})
        self.store.update_execution(exec_id, state="rolling_back")
        restored = 0
        reboot = False
        if snapshot is not None:
            cfg = self.snapshots.config(self.snapshot_config)
            if cfg.backend == "copy":
                self.snapshots.rollback(snapshot)
                restored = len(self._rollback_paths(record.plan))
            else:
                paths = self._rollback_paths(record.plan) + self.store.saved(exec_id)
                for i in range(0, len(paths), UNDO_CHUNK):
                    restored += self.snapshots.undo(snapshot, paths[i:i + UNDO_CHUNK]).changed
                self._restore_parent_times(cfg.snapshot_dir / snapshot, paths)
        journal.record("reset.rollback.done", {"op": exec_id})
        self.store.update_execution(exec_id, state="rolled_back", finished=self.clock())
        return ResetRollbackResult(execution=exec_id, snapshot=snapshot or "",
                                   restored=restored, reboot_required=reboot)

    def _restore_parent_times(self, snapshot_tree: Path, paths: Sequence[str]) -> None:
        """A file-level btrfs undo keeps the ancestor directories' times as they are
        now (the removals changed them); put back the times the snapshot holds. The
        snapshot is the read-only subvolume `<snapshot_dir>/<id>` (btrfs backend)."""
        snap = TargetRoot(snapshot_tree)
        # every ancestor: removing a package's directory changes its parent's times
        # too (the copy store likewise restores the metadata of all ancestors)
        ancestors = {"/".join(p.split("/")[:i]) for p in paths
                     for i in range(1, p.count("/") + 1)}
        parents = sorted(ancestors, key=lambda p: -p.count("/"))
        for rel in parents:
            try:
                sfd = snap.open_dir(rel)
            except (OSError, OseError):
                continue
            try:
                st = os.fstat(sfd)
                lfd = self.root.open_dir(rel)
            except (OSError, OseError):
                os.close(sfd)
                continue
            try:
                os.utime(lfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(lfd)
                os.close(sfd)

    @staticmethod
    def decisions(entries: Iterable[JournalEntry]) -> list[RecoveryDecision]:
        """What each reset execution in a journal reached."""
        found: dict[str, dict[str, Any]] = {}
        for step, data in entries:
            op = data.get("op")
            if not isinstance(op, str) or not step.startswith("reset."):
                continue
            d = found.setdefault(op, {"plan": "", "snapshot": None, "saved": False,
                                      "deleting": False, "finished": False,
                                      "rolled_back": False, "dry_run": False,
                                      "rollback_started": False})
            if step == "reset.begin":
                d["plan"] = str(data.get("plan", ""))
                d["dry_run"] = bool(data.get("dry_run"))
            elif step == "reset.snapshot":
                d["snapshot"] = str(data["snapshot"])
            elif step == "reset.saved":
                d["saved"] = True
            elif step == "reset.delete":
                d["deleting"] = True
            elif step == "reset.done":
                d["finished"] = True
            elif step == "reset.rollback.done":
                d["rolled_back"] = True
            elif step == "reset.rollback.begin":
                d["rollback_started"] = True
                if data.get("snapshot"):
                    d["snapshot"] = str(data["snapshot"])
        return [RecoveryDecision(execution=op, plan=d["plan"], snapshot=d["snapshot"],
                                 saved=d["saved"], deleting=d["deleting"],
                                 finished=d["finished"], rolled_back=d["rolled_back"],
                                 rollback_started=d["rollback_started"])
                for op, d in found.items() if not d["dry_run"]]

    def interrupted(self) -> list[ExecutionRecord]:
        """Executions a dead process left running or rolling back (call at start-up:
        they are marked `interrupted` and wait for resume or rollback)."""
        out = []
        for r in self.store.list_executions():
            if r.state in ("running", "rolling_back"):
                state: ExecutionState = ("interrupted" if r.state == "running"
                                         else "rollback_interrupted")
                self.store.update_execution(r.id, state=state)
                out.append(r.model_copy(update={"state": state}))
            elif r.state in ("interrupted", "rollback_interrupted"):
                out.append(r)
        return out

    def resume(self, exec_id: str, entries: Iterable[JournalEntry], journal: Journal,
               progress: Progress | None = None,
               check_cancelled: Callable[[], None] | None = None) -> ExecuteResult:
        """Finish an interrupted execution: from its journal, make the rollback point
        if it wasn't, save what wasn't saved, remove what is left (removals already
        done count as gone)."""
        record = self.get_execution(exec_id)
        mine = [d for d in self.decisions(entries) if d.execution == exec_id]
        if record.state == "rolled_back":
            raise NotApplicable(f"execution {exec_id} was rolled back already: nothing "
                                "to resume (preview again for a new plan)")
        if record.state in ("rolling_back", "rollback_interrupted") or (
                mine and mine[0].rollback_started):
            raise NotApplicable(f"a rollback of {exec_id} was started; finish it with "
                                "Rollback (or preview again)")
        if record.state == "done" and record.result is not None:
            return record.result
        d = mine[0] if mine else RecoveryDecision(
            execution=exec_id, plan=record.plan, snapshot=None, saved=False,
            deleting=False, finished=False, rolled_back=False)
        plan = self.get_plan(record.plan)
        if plan.digest != record.digest:
            raise DigestMismatch("the plan changed since this execution started")
        self.store.update_execution(exec_id, state="running")
        journal.record("reset.resume", {"op": exec_id})
        return self._guarded(exec_id, False, lambda: self._run(
            plan, exec_id, journal, False, d.snapshot or record.snapshot, d.saved,
            record.job_id, progress, check_cancelled))


class _Tally:
    def __init__(self) -> None:
        self.removed = self.removed_bytes = self.gone = self.skipped_count = 0
        self.skipped: list[SkippedItem] = []
        self.unsaved: set[str] = set()

    def count(self, rel: str, why: str | None, used: int) -> None:
        if why is None:
            self.removed += 1
            self.removed_bytes += used
        elif why == "gone":
            self.gone += 1
        else:
            self.skipped_count += 1
            if len(self.skipped) < MAX_SKIPPED_REPORTED:
                self.skipped.append(SkippedItem(path=rel, reason=why))


def _header(selection: Selection, analysis: AnalyzeResult) -> bytes:
    return (dumps(selection) + "\n" + dumps(analysis) + "\n").encode()


# nuclear: "apt and dpkg reinstalled with their default configuration"
DEFAULT_CONFIG_PACKAGES = frozenset({"apt", "dpkg"})


# /var/lib/<pkg> of a purged package is its data; these two are the package
# machinery's own state (saved and restored as such, never emptied as "data")
PURGED_DATA_DIR = "var/lib"
PURGED_DATA_KEEP = frozenset({"dpkg", "apt"})


def _purged_data(profile: Profile, changes: Sequence[PackageChange],
                 refused: frozenset[str]) -> tuple[Anchor, str] | None:
    """deep/nuclear: /var/lib/<pkg> of each package being purged, taken whole (what
    dpkg lists there stays to the purge itself, as everywhere)."""
    if not profile.packages.purge_data or any(
            r == PURGED_DATA_DIR or PURGED_DATA_DIR.startswith(r + "/") for r in refused):
        return None
    names = sorted(n for n in {c.name for c in changes if c.action == "purge"}
                   - PURGED_DATA_KEEP
                   if refused_reason(f"{PURGED_DATA_DIR}/{n}", refused) is None)
    if not names:
        return None
    return (Anchor(rel=PURGED_DATA_DIR, rule="purged-data", cls="app", risk="destructive",
                   names=tuple(names), min_mtime_ns=None, exclude=(), top_level=True),
            "data of purged packages (/var/lib/<package>)")


def _removals(changes: Iterable[PackageChange]) -> list[PackageChange]:
    return [c for c in changes if c.action != "install"]


def selection_packages(selection: Selection) -> bool:
    return "*" not in selection.exclude_packages


def _match_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
