"""The candidate walk: scandir from directory fds, never following a symlink, never
entering another filesystem (st_dev) or a mount point (bind mounts share st_dev, so
the mount table is checked too), split over worker processes for big trees.

An entry becomes an item when its rule and the selection take it; a directory becomes
an item only when everything under it did (then removing it after its contents is
exactly "remove this tree"); otherwise it stays, and so do its ancestors.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from oseprovd.reset.models import ItemClass, ItemKind, Risk

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
RISK_ORDER = {"safe": 0, "caution": 1, "destructive": 2}
MAX_DEPTH = 256

# One item as it travels between processes and into the plan store (compact: a plan
# may hold millions): path, kind, size, bytes, uid, gid, ino, dev, mtime_ns, cls, risk,
# rule, anchor index.
Item = tuple[str, str, int, int, int, int, int, int, int, str, str, str, int]


def _regex(globs: Iterable[str]) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(g.strip("/")) for g in globs]
    return re.compile("|".join(parts)) if parts else None


@dataclass(frozen=True)
class Anchor:
    """One tree a rule names (its contents are candidates)."""

    rel: str
    rule: str
    cls: ItemClass
    risk: Risk
    names: tuple[str, ...]
    # entries modified (or, files, read) after this are too young: a file in use is
    # kept, as systemd-tmpfiles keeps it (directories: mtime only, our own listing
    # moves their atime)
    min_mtime_ns: int | None
    exclude: tuple[str, ...]
    # names select the tree's top-level entries only, each taken whole (dotfiles)
    top_level: bool = False
    skel: bool = False  # /etc/skel is copied into the tree after removal
    keep_newest_bytes: int = 0  # see keep_newest(): such a tree's items are always collected


@dataclass(frozen=True)
class Filters:
    """The selection's per-item filters (package filters act on package changes)."""

    include_paths: tuple[str, ...] = ()
    exclude_paths: tuple[str, ...] = ()
    include_globs: tuple[str, ...] = ()
    exclude_globs: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    exclude_classes: tuple[str, ...] = ()
    uids: tuple[int, ...] | None = None  # None: any owner
    exclude_uids: tuple[int, ...] = ()
    max_risk: str = "destructive"


@dataclass(frozen=True)
class ScanSpec:
    root: str  # host path of the target root
    anchors: tuple[Anchor, ...]
    filters: Filters
    refused: frozenset[str]  # relative paths never taken nor entered
    mounts: frozenset[str]  # relative paths that are mount points
    owned: frozenset[str]  # relative paths dpkg owns (kept; their parents stay)
    collect: bool = True  # items (preview) or only totals (analyze)


@dataclass
class ScanResult:
    items: list[Item] = field(default_factory=list)
    totals: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    owned_kept: int = 0
    owned_paths: list[str] = field(default_factory=list)  # those entries (for their packages)
    kept_packages: dict[str, int] = field(default_factory=dict)  # filled by the engine
    mounts_skipped: list[str] = field(default_factory=list)
    symlink_anchors: list[str] = field(default_factory=list)
    complete: bool = True

    def merge(self, other: ScanResult) -> None:
        self.items.extend(other.items)
        for k, v in other.totals.items():
            t = self.totals.setdefault(k, [0, 0])
            t[0] += v[0]
            t[1] += v[1]
        self.owned_kept += other.owned_kept
        self.owned_paths.extend(other.owned_paths)
        self.mounts_skipped.extend(other.mounts_skipped)
        self.symlink_anchors.extend(other.symlink_anchors)


def _kind(mode: int) -> ItemKind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


class _Walker:
    def __init__(self, spec: ScanSpec, anchor_index: int) -> None:
        self.spec = spec
        self.anchor = spec.anchors[anchor_index]
        self.index = anchor_index
        f = spec.filters
        a = self.anchor
        self.names = _regex(a.names)
        self.prune = _regex((*a.exclude, *f.exclude_globs))
        self.include = _regex(f.include_globs)
        self.inc_paths = tuple(p.strip("/") for p in f.include_paths)
        self.exc_paths = tuple(p.strip("/") for p in f.exclude_paths)
        self.cls_ok = self._class_ok(a.cls)
        self.risk_ok = RISK_ORDER[a.risk] <= RISK_ORDER[f.max_risk]
        self.refused = frozenset(r for r in spec.refused if r.startswith(a.rel + "/"))
        self.mounts = frozenset(m for m in spec.mounts if m.startswith(a.rel + "/"))
        self.owned = spec.owned
        self.inner = frozenset(o.rel for o in spec.anchors if o.rel.startswith(a.rel + "/"))
        self.result = ScanResult()
        # hot-path copies (see _file)
        self.special = self.refused | self.inner
        self.fast = (not self.inc_paths and not self.exc_paths and self.risk_ok
                     and not (a.names and a.top_level))
        self.min_mtime = a.min_mtime_ns
        self.uids = f.uids
        self.exclude_uids = frozenset(f.exclude_uids)
        self.person_is_user = a.cls == "app"
        self.user_ok = self._class_ok("user")
        self.totals = self.result.totals
        self.items = self.result.items
        self.collect = spec.collect or self.anchor.keep_newest_bytes > 0

    def _class_ok(self, cls: str) -> bool:
        f = self.spec.filters
        return (not f.classes or cls in f.classes) and cls not in f.exclude_classes

    def _cls(self, uid: int) -> str:
        # application data owned by a person is theirs
        if self.anchor.cls == "app" and uid >= 1000 and uid != 65534:
            return "user"
        return self.anchor.cls

    def _path_ok(self, rel: str) -> tuple[bool, bool]:
        """(take it, descend into it) as far as path filters go."""
        for p in self.exc_paths:
            if rel == p or rel.startswith(p + "/"):
                return False, False
        if self.inc_paths:
            inside = any(rel == p or rel.startswith(p + "/") for p in self.inc_paths)
            if not inside:
                above = any(p.startswith(rel + "/") for p in self.inc_paths)
                return False, above
        return True, True

    def _take(self, rel: str, st: os.stat_result, is_dir: bool) -> str | None:
        """The item's class if the entry itself is taken, else None."""
        a = self.anchor
        f = self.spec.filters
        if self.names is not None and not a.top_level and (
                is_dir or not self.names.fullmatch(rel.rsplit("/", 1)[-1])):
            return None
        if a.min_mtime_ns is not None and (st.st_mtime_ns > a.min_mtime_ns or (
                not is_dir and st.st_atime_ns > a.min_mtime_ns)):
            return None
        if self.include is not None and not self.include.fullmatch(rel):
            return None
        if f.uids is not None and st.st_uid not in f.uids:
            return None
        if st.st_uid in f.exclude_uids:
            return None
        if not self.risk_ok:
            return None
        cls = self._cls(st.st_uid)
        if cls != a.cls and not self._class_ok(cls):
            return None
        if cls == a.cls and not self.cls_ok:
            return None
        return cls

    def _add(self, rel: str, st: os.stat_result, cls: str) -> None:
        size = st.st_size
        used = st.st_blocks * 512
        a = self.anchor
        key = (cls, a.risk, a.rule)
        t = self.result.totals.get(key)
        if t is None:
            t = self.result.totals[key] = [0, 0]
        t[0] += 1
        t[1] += used
        if self.collect:
            self.result.items.append((rel, _kind(st.st_mode), size, used, st.st_uid,
                                      st.st_gid, st.st_ino, st.st_dev, st.st_mtime_ns,
                                      cls, a.risk, a.rule, self.index))

    def walk(self, fd: int, prefix: str, dev: int, depth: int,
             files_only: bool = False) -> bool:
        """Entries of the open directory `fd` (whose relative path is prefix minus its
        trailing "/"); True when every entry became an item."""
        if depth > MAX_DEPTH:
            return False
        complete = True
        with os.scandir(fd) as it:
            entries = list(it)
        fast = self.fast and not (depth == 0 and self.anchor.top_level)
        for e in entries:
            if files_only and e.is_dir(follow_symlinks=False):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if fast and not stat.S_ISDIR(st.st_mode):
                if not self._file(prefix + e.name, e.name, st):
                    complete = False
            elif not self.entry(fd, e.name, st, prefix, dev, depth):
                complete = False
        return complete

    def _file(self, rel: str, name: str, st: os.stat_result) -> bool:
        """entry() for a non-directory, without the checks that can't apply (no path
        filters), inlined: this is the walk's hot path."""
        if rel in self.special or rel in self.owned:
            return self.entry_file_slow(rel, st)
        if self.prune is not None and self.prune.fullmatch(rel):
            return False
        names = self.names
        if names is not None and not names.fullmatch(name):
            return False
        min_mtime = self.min_mtime
        if min_mtime is not None and (st.st_mtime_ns > min_mtime
                                      or st.st_atime_ns > min_mtime):
            return False
        if self.include is not None and not self.include.fullmatch(rel):
            return False
        uid = st.st_uid
        if (self.uids is not None and uid not in self.uids) or uid in self.exclude_uids:
            return False
        if self.person_is_user and uid >= 1000 and uid != 65534:
            if not self.user_ok:
                return False
            cls = "user"
        elif self.cls_ok:
            cls = self.anchor.cls
        else:
            return False
        used = st.st_blocks * 512
        key = (cls, self.anchor.risk, self.anchor.rule)
        t = self.totals.get(key)
        if t is None:
            t = self.totals[key] = [0, 0]
        t[0] += 1
        t[1] += used
        if self.collect:
            self.items.append((rel, _kind(st.st_mode), st.st_size, used, uid, st.st_gid,
                               st.st_ino, st.st_dev, st.st_mtime_ns, cls,
                               self.anchor.risk, self.anchor.rule, self.index))
        return True

    def entry_file_slow(self, rel: str, st: os.stat_result) -> bool:
        owned = rel in self.owned
        if owned:
            self.result.owned_kept += 1
            self.result.owned_paths.append(rel)
        if owned or rel in self.refused or rel in self.inner:
            return False
        if self.prune is not None and self.prune.fullmatch(rel):
            return False
        cls = self._take(rel, st, False)
        if cls is None:
            return False
        self._add(rel, st, cls)
        return True

    def entry(self, fd: int, name: str, st: os.stat_result, prefix: str, dev: int,
              depth: int) -> bool:
        """One entry of directory `fd`; True when it (and all under it) became items."""
        rel = prefix + name
        if (depth == 0 and self.anchor.top_level and self.names is not None
                and not self.names.fullmatch(name)):
            return False
        if self.prune is not None and self.prune.fullmatch(rel):
            return False
        if rel in self.refused or rel in self.inner:
            return False
        take_ok, descend_ok = self._path_ok(rel)
        if not descend_ok:
            return False
        owned = rel in self.owned
        if owned:
            self.result.owned_kept += 1
            self.result.owned_paths.append(rel)
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev != dev or rel in self.mounts:
                self.result.mounts_skipped.append(rel)
                return False
            try:
                sub = os.open(name, _DIR, dir_fd=fd)
            except OSError:
                return False
            try:
                if os.fstat(sub).st_ino != st.st_ino:
                    return False  # swapped since it was listed
                sub_complete = self.walk(sub, rel + "/", dev, depth + 1)
            finally:
                os.close(sub)
            cls = None if owned or not take_ok else self._take(rel, st, True)
            if sub_complete and cls is not None:
                self._add(rel, st, cls)
                return True
            return False
        cls = None if owned or not take_ok else self._take(rel, st, False)
        if cls is not None:
            self._add(rel, st, cls)
            return True
        return False


def keep_newest(anchors: Sequence[Anchor], result: ScanResult, collect: bool) -> None:
    """Trees with a byte budget: their newest items whose allocated bytes fit in it stay
    (taken out of the items and the totals), as `journalctl --vacuum-size` deletes the
    oldest archives until the rest fits. Without `collect`, their items are dropped
    after (Analyze keeps totals only)."""
    budgets = {i: a.keep_newest_bytes for i, a in enumerate(anchors) if a.keep_newest_bytes}
    if not budgets:
        return
    mine: dict[int, list[Item]] = {}
    for it in result.items:
        if it[12] in budgets:
            mine.setdefault(it[12], []).append(it)
    stay: set[int] = set()
    for index, items in mine.items():
        left = budgets[index]
        for it in sorted(items, key=lambda x: (-x[8], x[0])):  # newest first
            if it[3] > left:
                break  # this one and every older one go
            left -= it[3]
            stay.add(id(it))
            t = result.totals[(it[9], it[10], it[11])]
            t[0] -= 1
            t[1] -= it[3]
    if not collect:
        result.items = []  # only the budgeted trees' items were collected
    elif stay:
        result.items = [it for it in result.items if id(it) not in stay]


class UnsafeAnchor(Exception):
    """A component of a rule's tree is a symlink or not a directory."""


def open_anchor(root_fd: int, rel: str) -> int | None:
    """The anchor's directory, component by component with O_NOFOLLOW; None if a
    component is missing, a symlink or not a directory (then it is not ours to walk)."""
    fd = os.dup(root_fd)
    try:
        for part in rel.split("/"):
            try:
                nfd = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeAnchor(rel) from None
                return None
            os.close(fd)
            fd = nfd
        out, fd = fd, -1
        return out
    finally:
        if fd >= 0:
            os.close(fd)


Task = tuple[int, str | None]  # (anchor, None = its files / a directory's name)


def _run_task(spec: ScanSpec, walker: _Walker, root_fd: int, entry: str | None) -> bool:
    anchor = spec.anchors[walker.index]
    try:
        fd = open_anchor(root_fd, anchor.rel)
    except UnsafeAnchor:
        if entry is None:
            walker.result.symlink_anchors.append(anchor.rel)
        return False
    if fd is None:
        return True
    try:
        dev = os.fstat(fd).st_dev
        prefix = anchor.rel + "/"
        if entry is None:
            return walker.walk(fd, prefix, dev, 0, files_only=True)
        try:
            st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        return walker.entry(fd, entry, st, prefix, dev, 0)
    finally:
        os.close(fd)


def scan_tasks(spec: ScanSpec, tasks: Sequence[Task]) -> ScanResult:
    """Run tasks (in a worker or in place); `complete` is False if any anchor wasn't."""
    total = ScanResult()
    walkers: dict[int, _Walker] = {}
    root_fd = os.open(spec.root, _DIR)
    try:
        for index, entry in tasks:
            walker = walkers.get(index)
            if walker is None:
                walker = walkers[index] = _Walker(spec, index)
            if not _run_task(spec, walker, root_fd, entry):
                walker.result.complete = False
    finally:
        os.close(root_fd)
    for w in walkers.values():
        total.merge(w.result)
    return total


def _subdirs(root_fd: int, rel: str) -> list[str] | None:
    try:
        fd = open_anchor(root_fd, rel)
    except UnsafeAnchor:
        return None
    if fd is None:
        return None
    try:
        with os.scandir(fd) as it:
            return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    finally:
        os.close(fd)


def scan(spec: ScanSpec, pool: Executor | None = None, workers: int = 1) -> ScanResult:
    """Every anchor; with a pool, the anchors' top-level directories are spread over
    `workers` processes (chunks dealt round-robin, several per worker)."""
    if pool is None:
        return _scan_whole(spec)
    tasks: list[Task] = []
    seen: set[str] = set()
    root_fd = os.open(spec.root, _DIR)
    try:
        for i, anchor in enumerate(spec.anchors):
            if anchor.rel in seen:
                continue
            seen.add(anchor.rel)
            tasks.append((i, None))
            tasks.extend((i, n) for n in _subdirs(root_fd, anchor.rel) or ())
    finally:
        os.close(root_fd)
    nchunks = max(1, min(len(tasks), workers * 4))
    chunks: list[list[Task]] = [[] for _ in range(nchunks)]
    for k, task in enumerate(tasks):
        chunks[k % nchunks].append(task)
    total = ScanResult()
    for fut in [pool.submit(scan_tasks, spec, c) for c in chunks]:
        total.merge(fut.result())
    return total


def _scan_whole(spec: ScanSpec) -> ScanResult:
    total = ScanResult()
    seen: set[str] = set()
    root_fd = os.open(spec.root, _DIR)
    try:
        for i, anchor in enumerate(spec.anchors):
            if anchor.rel in seen:
                continue
            seen.add(anchor.rel)
            walker = _Walker(spec, i)
            try:
                fd = open_anchor(root_fd, anchor.rel)
            except UnsafeAnchor:
                walker.result.symlink_anchors.append(anchor.rel)
                fd = None
            if fd is not None:
                try:
                    walker.walk(fd, anchor.rel + "/", os.fstat(fd).st_dev, 0)
                finally:
                    os.close(fd)
            total.merge(walker.result)
    finally:
        os.close(root_fd)
    return total


def exit_with(parent_pid: int) -> None:
    """Pool worker initializer: end this worker when the process that made the pool is
    gone. A forkserver worker is not the daemon's child, holds both ends of the pool's
    queue (so it never sees EOF) and keeps the forkserver alive: without this, a daemon
    killed with SIGKILL outside systemd's cgroup cleanup leaves them running forever."""
    try:
        pidfd = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        os._exit(0)

    def wait() -> None:
        import select

        select.select([pidfd], [], [])  # readable when the process has exited
        os._exit(0)

    threading.Thread(target=wait, name="exit-with-parent", daemon=True).start()
