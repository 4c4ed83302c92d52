"""copy backend, for filesystems without snapshots (ext4, xfs): an operation-scoped
rollback store.

A "snapshot" here is a store directory that starts empty; before an operation changes
or deletes a path it calls `will_change(paths)`, and the store keeps a copy of exactly
those paths (reflinked with FICLONE where the filesystem can, copied otherwise, holes
kept) with owner, mode, times, xattrs and ACLs, plus the metadata of their parent
directories and the fact that a path did not exist. Restoring puts all of it back, so
the cost follows what the operation touches, never the size of the tree.

Layout of snapshot_dir/<id>/ (root-owned, 0700):
  token            random identity, recorded as the snapshot's uuid
  manifest.jsonl   one line per saved path, appended (and fsync'd) after its copy is
                   complete: {"path", "kind": "node" | "absent" | "dir", ...}
  links.jsonl      live inode -> first saved path, so hard links stay hard links
  tree/            saved nodes at their relative paths
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import Any

from oseprovd.errors import InvalidArguments, NotApplicable
from oseprovd.snapshots import treesync
from oseprovd.snapshots.backend import CreatedSnapshot
from oseprovd.snapshots.diff import diff_dirs, diff_entry
from oseprovd.snapshots.errors import (
    BackendFailed,
    NotRecorded,
    SnapshotNotFound,
    UnsafeSnapshotPath,
)
from oseprovd.snapshots.ids import check_op_id, check_snapshot_id
from oseprovd.snapshots.journal import Journal, StepJournal
from oseprovd.snapshots.models import (
    DiffEntry,
    RecoveryOutcome,
    RollbackResult,
    SnapshotConfig,
    SnapshotRecord,
    UndoResult,
)
from oseprovd.snapshots.places import open_private_dir, statvfs_free
from oseprovd.system import fileops
from oseprovd.system.rootfs import split_rel

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
Entry = dict[str, Any]


def _parts(rel: str) -> tuple[str, ...]:
    return split_rel(rel) if rel else ()


def _under(rel: str, top: str) -> bool:
    return top in ("", rel) or rel.startswith(top + "/")


def _append_line(dir_fd: int, name: str, obj: dict[str, Any]) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dir_fd)
    try:
        # ensure_ascii keeps non-UTF-8 names (surrogate escapes) representable
        os.write(fd, (json.dumps(obj, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_lines(dir_fd: int, name: str) -> list[dict[str, Any]]:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return []
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    out = []
    for line in b"".join(chunks).split(b"\n"):
        with suppress(ValueError):
            if line:
                out.append(json.loads(line))
    return out


class _Store:
    """One open store directory."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.tree = os.open("tree", _DIR, dir_fd=fd)

    def close(self) -> None:
        os.close(self.tree)
        os.close(self.fd)

    def manifest(self) -> list[Entry]:
        return _read_lines(self.fd, "manifest.jsonl")

    def link_entries(self) -> list[dict[str, Any]]:
        return _read_lines(self.fd, "links.jsonl")

    def links(self) -> dict[tuple[int, int], str | int]:
        return {(int(e["dev"]), int(e["ino"])): str(e["path"])
                for e in self.link_entries()}


class CopyBackend:
    name = "copy"

    # -- places ----------------------------------------------------------------------

    def prepare(self, config: SnapshotConfig) -> None:
        os.close(open_private_dir(config.snapshot_dir, create=True))
        os.close(self._open_live(config))

    def _open_live(self, config: SnapshotConfig) -> int:
        try:
            return os.open(config.path, _DIR)
        except OSError as exc:
            raise UnsafeSnapshotPath(f"{config.path}: {exc.strerror}") from None

    def _open_store(self, config: SnapshotConfig, record: SnapshotRecord) -> _Store:
        check_snapshot_id(record.id)
        sdir = open_private_dir(config.snapshot_dir, create=False)
        try:
            try:
                fd = os.open(record.id, _DIR, dir_fd=sdir)
            except FileNotFoundError:
                raise SnapshotNotFound(f"the store of {record.id} is gone") from None
            except OSError as exc:
                raise UnsafeSnapshotPath(
                    f"{config.snapshot_dir}/{record.id} is a symlink or not a directory"
                ) from exc
        finally:
            os.close(sdir)
        try:
            token = _read_lines(fd, "token")
            if not token or token[0].get("token") != record.uuid:
                raise NotRecorded(f"{config.snapshot_dir}/{record.id} is not the store "
                                  f"recorded as {record.id}; it is left alone")
            return _Store(fd)
        except BaseException:
            os.close(fd)
            raise

    def create(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot:
        check_snapshot_id(snap_id)
        sdir = open_private_dir(config.snapshot_dir, create=True)
        try:
            try:
                os.mkdir(snap_id, 0o700, dir_fd=sdir)
            except FileExistsError:
                raise BackendFailed(f"{config.snapshot_dir}/{snap_id} already exists") from None
            fd = os.open(snap_id, _DIR, dir_fd=sdir)
            try:
                os.mkdir("tree", 0o700, dir_fd=fd)
                token = secrets.token_hex(16)
                _append_line(fd, "token", {"token": token})
                os.fsync(fd)
            finally:
                os.close(fd)
            os.fsync(sdir)
        finally:
            os.close(sdir)
        return CreatedSnapshot(uuid=token, size=0)

    def open_browse(self, config: SnapshotConfig, record: SnapshotRecord) -> int:
        # The store holds only what operations said they would change, with metadata
        # beside it: not a tree to browse. Diff and UndoChange are the ways in.
        raise NotApplicable(f"{record.id} is a copy-backend snapshot: it keeps only the "
                            "files an operation changed, not a tree to mount; use Diff "
                            "and UndoChange")

    def describe(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot | None:
        sdir = open_private_dir(config.snapshot_dir, create=False)
        try:
            try:
                fd = os.open(check_snapshot_id(snap_id), _DIR, dir_fd=sdir)
            except OSError:
                return None
            try:
                token = _read_lines(fd, "token")
            finally:
                os.close(fd)
        finally:
            os.close(sdir)
        if not token or not isinstance(token[0].get("token"), str):
            return None
        return CreatedSnapshot(uuid=token[0]["token"])

    def verify(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        self._open_store(config, record).close()

    def delete(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        self._open_store(config, record).close()
        sdir = open_private_dir(config.snapshot_dir, create=False)
        try:
            fileops.remove_tree_at(sdir, record.id, os.fstat(sdir).st_dev)
        finally:
            os.close(sdir)

    def free_fraction(self, config: SnapshotConfig) -> float:
        return statvfs_free(config.snapshot_dir if config.backend == "copy"
                            else config.path)

    # -- saving ----------------------------------------------------------------------

    def will_change(self, config: SnapshotConfig, record: SnapshotRecord,
                    paths: Sequence[str], created: bool) -> None:
        store = self._open_store(config, record)
        live = self._open_live(config)
        try:
            entries = {str(e["path"]): e for e in store.manifest()}
            links = store.links()
            for path in paths:
                self._save(config, store, live, _parts(path), created, entries, links)
        finally:
            os.close(live)
            store.close()

    def _covered(self, rel: str, entries: dict[str, Entry]) -> bool:
        """Saved already: the path itself, or inside a saved or absent tree."""
        if rel in entries and entries[rel]["kind"] != "dir":
            return True
        parts = _parts(rel)
        for i in range(len(parts)):
            anc = entries.get("/".join(parts[:i]))
            if anc is not None and anc["kind"] in ("node", "absent"):
                return True
        return False

    def _add(self, store: _Store, entries: dict[str, Entry], entry: Entry) -> None:
        _append_line(store.fd, "manifest.jsonl", entry)
        entries[str(entry["path"])] = entry

    def _save(self, config: SnapshotConfig, store: _Store, live: int,
              parts: tuple[str, ...], created: bool, entries: dict[str, Entry],
              links: dict[tuple[int, int], str | int]) -> None:
        rel = "/".join(parts)
        if any(_under(rel, x) for x in config.excluded()):
            raise InvalidArguments(f"{rel!r} is the snapshot store itself")
        if self._covered(rel, entries):
            return
        live_dev = os.fstat(live).st_dev
        # Parents first: their metadata (an operation that adds or removes an entry
        # changes the parent's mtime), or the fact that they don't exist yet.
        dfd = os.dup(live)
        mfd = os.dup(store.tree)
        try:
            for depth in range(len(parts) + 1):
                sub = "/".join(parts[:depth])
                st = os.fstat(dfd)
                if depth < len(parts) and sub not in entries:
                    # an ancestor: its metadata only; what else appears in it during
                    # the operation is not ours to remove
                    self._add(store, entries, self._dir_entry(sub, dfd, st, False))
                if depth == len(parts):
                    break
                name = parts[depth]
                nst = fileops.lstat_at(dfd, name)
                if nst is None:
                    self._add(store, entries, {"path": "/".join(parts[:depth + 1]),
                                               "kind": "absent"})
                    return
                if depth == len(parts) - 1:
                    self._save_node(store, entries, links, live, dfd, mfd, name, rel,
                                    live_dev, created, config.excluded())
                    return
                if not stat.S_ISDIR(nst.st_mode):
                    raise UnsafeSnapshotPath(f"{rel!r}: {name!r} is a symlink or not a "
                                             "directory")
                nd = fileops.open_dir_at(dfd, name)
                os.close(dfd)
                dfd = nd
                with suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=mfd)
                nm = fileops.open_dir_at(mfd, name)
                os.close(mfd)
                mfd = nm
            # parts == (): the whole tree
            self._save_node(store, entries, links, live, None, mfd, "", "", live_dev,
                            created, config.excluded(), root_fd=dfd)
        finally:
            os.close(dfd)
            os.close(mfd)

    def _dir_entry(self, rel: str, fd: int, st: os.stat_result, created: bool) -> Entry:
        entry: Entry = {
            "path": rel, "kind": "dir", "mode": st.st_mode, "uid": st.st_uid,
            "gid": st.st_gid, "atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns,
            "xattrs": {k: base64.b64encode(v).decode()
                       for k, v in fileops.read_xattrs(fd).items()},
        }
        if created:
            entry["listing"] = sorted(os.listdir(fd))
        return entry

    def _save_node(self, store: _Store, entries: dict[str, Entry],
                   links: dict[tuple[int, int], str | int], live: int,
                   live_parent: int | None, mfd: int, name: str, rel: str, live_dev: int,
                   created: bool, exclude: frozenset[str],
                   root_fd: int | None = None) -> None:
        ctx = treesync.SyncContext(op=secrets.token_hex(8), live_root_fd=store.tree,
                                   same_inodes=False, src_dev=live_dev, exclude=exclude)
        ctx.links.update(links)
        before = set(ctx.links)
        if root_fd is not None:  # the whole tree: its entries, then its own metadata
            treesync.sync_children(ctx, root_fd, mfd, "", os.fstat(mfd).st_dev)
            self._add(store, entries, {**self._dir_entry("", root_fd, os.fstat(root_fd),
                                                         created), "kind": "node",
                                       "created": created})
        else:
            assert live_parent is not None
            treesync.sync_entry(ctx, live_parent, mfd, name, rel, os.fstat(mfd).st_dev)
            self._add(store, entries, {"path": rel, "kind": "node", "created": created})
        for key in set(ctx.links) - before:
            path = str(ctx.links[key])
            line: dict[str, Any] = {"dev": key[0], "ino": key[1], "path": path}
            handle = self._handle(live, path)
            if handle is not None:  # to find the inode's other names' inode again
                line["htype"], line["handle"] = handle[0], handle[1].hex()
            _append_line(store.fd, "links.jsonl", line)
            links[key] = path

    def _handle(self, live: int, rel: str) -> tuple[int, bytes] | None:
        parts = _parts(rel)
        parent = treesync.walk_dir(live, parts[:-1])
        if parent is None:
            return None
        try:
            fd = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
        try:
            return fileops.file_handle(fd)
        finally:
            os.close(fd)

    def _anchor(self, store: _Store, live: int, line: dict[str, Any],
                ctx: treesync.SyncContext) -> int | None:
        """A hard-linked file whose inode still exists (under its other names, which
        weren't saved): put its saved content and metadata back into that inode and
        return it open, so the saved names become links to it again."""
        fd = fileops.open_by_handle(live, int(line["htype"]), bytes.fromhex(line["handle"]),
                                    os.O_RDWR | os.O_NOFOLLOW)
        if fd is None:
            return None
        parts = _parts(str(line["path"]))
        mparent = treesync.walk_dir(store.tree, parts[:-1])
        try:
            st = os.fstat(fd)
            if mparent is None or not stat.S_ISREG(st.st_mode) or st.st_nlink == 0:
                os.close(fd)
                return None
            mfd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=mparent)
            try:
                ms = os.fstat(mfd)
                fileops.clone_or_copy(mfd, fd)
                fileops.apply_metadata_fd(fd, ms, fileops.read_xattrs(mfd))
                ctx.links[(ms.st_dev, ms.st_ino)] = fd
            finally:
                os.close(mfd)
        except BaseException:
            os.close(fd)
            raise
        finally:
            if mparent is not None:
                os.close(mparent)
        return fd

    # -- restoring -------------------------------------------------------------------

    def _selected(self, store: _Store, paths: Sequence[str] | None) -> list[Entry]:
        entries = list({str(e["path"]): e for e in store.manifest()}.values())
        if paths is None:
            return entries
        tops = ["/".join(_parts(p)) for p in paths]
        return [e for e in entries if any(_under(str(e["path"]), t) for t in tops)]

    def _restore(self, config: SnapshotConfig, record: SnapshotRecord,
                 paths: Sequence[str] | None, op: str, journal: Journal) -> UndoResult:
        check_op_id(op)
        store = self._open_store(config, record)
        live = self._open_live(config)
        anchors: list[int] = []
        try:
            selected = self._selected(store, paths)
            ctx = treesync.SyncContext(op=op, live_root_fd=live, same_inodes=False,
                                       exclude=config.excluded())
            live_dev = os.fstat(live).st_dev

            def depth(e: Entry) -> int:
                return len(_parts(str(e["path"])))

            absent = sorted((e for e in selected if e["kind"] == "absent"), key=depth,
                            reverse=True)
            nodes = sorted((e for e in selected if e["kind"] == "node"), key=depth)
            dirs = sorted((e for e in selected if e["kind"] == "dir"), key=depth,
                          reverse=True)
            node_paths = [str(e["path"]) for e in selected if e["kind"] == "node"]
            for line in store.link_entries():
                if "handle" in line and any(_under(str(line["path"]), p)
                                            for p in node_paths):
                    journal.record("copy.restore.inode", {"op": op, "path": line["path"]})
                    fd = self._anchor(store, live, line, ctx)
                    if fd is not None:
                        anchors.append(fd)
            for e in absent:
                journal.record("copy.restore.absent", {"op": op, "path": e["path"]})
                self._remove(live, _parts(str(e["path"])), live_dev, ctx)
            for e in nodes:
                journal.record("copy.restore.node", {"op": op, "path": e["path"]})
                ctx.keep_extra = not e.get("created", True)
                parts = _parts(str(e["path"]))
                if parts:
                    treesync.restore_paths(ctx, store.tree, live, [parts])
                else:
                    treesync.sync_children(ctx, store.tree, live, "", live_dev)
                    self._apply_dir(live, ".", e)
            for e in dirs:
                journal.record("copy.restore.dir", {"op": op, "path": e["path"]})
                self._restore_dir(live, _parts(str(e["path"])), e, live_dev, ctx)
        finally:
            for fd in anchors:
                os.close(fd)
            os.close(live)
            store.close()
        return UndoResult(snapshot=record.id,
                          paths=tuple(str(e["path"]) for e in selected),
                          changed=ctx.changed, skipped=tuple(ctx.skipped))

    def _remove(self, live: int, parts: tuple[str, ...], live_dev: int,
                ctx: treesync.SyncContext) -> None:
        parent = treesync.walk_dir(live, parts[:-1])
        if parent is None:
            return
        try:
            if fileops.lstat_at(parent, parts[-1]) is not None:
                fileops.remove_tree_at(parent, parts[-1], live_dev)
                ctx.changed += 1
        finally:
            os.close(parent)

    def _restore_dir(self, live: int, parts: tuple[str, ...], e: Entry, live_dev: int,
                     ctx: treesync.SyncContext) -> None:
        if not parts:
            parent, name = os.dup(live), "."
        else:
            # parents are restored before (deeper first order means they come later,
            # so make them now; their own entry sets their metadata afterwards)
            parent = self._make_dirs(live, parts[:-1])
            name = parts[-1]
            st = fileops.lstat_at(parent, name)
            if st is not None and not stat.S_ISDIR(st.st_mode):
                fileops.remove_tree_at(parent, name, live_dev)
                st = None
            if st is None:
                os.mkdir(name, 0o700, dir_fd=parent)
                ctx.changed += 1
        try:
            if "listing" in e:
                keep = set(e["listing"])
                dfd = fileops.open_dir_at(parent, name)
                try:
                    for child in os.listdir(dfd):
                        if child not in keep:
                            fileops.remove_tree_at(dfd, child, live_dev)
                            ctx.changed += 1
                finally:
                    os.close(dfd)
            self._apply_dir(parent, name, e)
        finally:
            os.close(parent)

    def _make_dirs(self, live: int, parts: tuple[str, ...]) -> int:
        fd = os.dup(live)
        try:
            for part in parts:
                with suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
                nfd = treesync.walk_dir(fd, (part,))
                if nfd is None:
                    raise FileNotFoundError(part)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _apply_dir(self, parent: int, name: str, e: Entry) -> None:
        st = fileops.FileMeta(st_mode=int(e["mode"]), st_uid=int(e["uid"]),
                              st_gid=int(e["gid"]), st_atime_ns=int(e["atime_ns"]),
                              st_mtime_ns=int(e["mtime_ns"]))
        xattrs = {k: base64.b64decode(v) for k, v in dict(e["xattrs"]).items()}
        fileops.apply_metadata(parent, name, st, xattrs)

    def undo(self, config: SnapshotConfig, record: SnapshotRecord, paths: Sequence[str],
             op: str, journal: StepJournal) -> UndoResult:
        return self._restore(config, record, paths, op, journal)

    def cleanup_undo(self, config: SnapshotConfig, op: str, paths: Sequence[str]) -> None:
        treesync.remove_undo_leftovers(lambda: self._open_live(config), op, paths)

    def rollback(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                 journal: Journal, previous_id: str) -> RollbackResult:
        journal.record("copy.rollback.begin", {"op": op})
        self._restore(config, record, None, op, journal)
        return RollbackResult(snapshot=record.id, reboot_required=False)

    def recover(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                steps: Sequence[tuple[str, dict[str, Any]]],
                journal: Journal) -> RecoveryOutcome:
        """A restore is idempotent: run it again to its end, then clear the temp entries
        the killed run left."""
        if not any(s == "copy.rollback.begin" for s, _ in steps):
            return RecoveryOutcome(op=op, action="rollback", outcome="nothing")
        result = self._restore(config, record, None, op, journal)
        self.cleanup_undo(config, op, result.paths)
        return RecoveryOutcome(op=op, action="rollback", outcome="finished")

    # -- diff ------------------------------------------------------------------------

    def diff(self, config: SnapshotConfig, record: SnapshotRecord,
             other: SnapshotRecord | None) -> Iterator[DiffEntry]:
        if other is not None:
            raise NotApplicable("a copy store holds only what one operation changed; "
                                "compare it with the live tree instead")
        store = self._open_store(config, record)
        live = self._open_live(config)
        try:
            for e in sorted(store.manifest(), key=lambda e: str(e["path"])):
                yield from self._diff_entry(config, store, live, e)
        finally:
            os.close(live)
            store.close()

    def _diff_entry(self, config: SnapshotConfig, store: _Store, live: int,
                    e: Entry) -> Iterator[DiffEntry]:
        rel = str(e["path"])
        parts = _parts(rel)
        if e["kind"] == "dir" or not parts:
            lp = treesync.walk_dir(live, parts)
            if lp is None:
                yield DiffEntry(path=rel, change="deleted")
                return
            try:
                st = os.fstat(lp)
                if ((st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
                        != (e["mode"], e["uid"], e["gid"], e["mtime_ns"])):
                    yield DiffEntry(path=rel, change="metadata")
                if e["kind"] == "node":
                    yield from diff_dirs(store.tree, lp, exclude=config.excluded())
            finally:
                os.close(lp)
            return
        mp = treesync.walk_dir(store.tree, parts[:-1])
        lp = treesync.walk_dir(live, parts[:-1])
        try:
            if e["kind"] == "absent":
                if lp is not None and fileops.lstat_at(lp, parts[-1]) is not None:
                    yield DiffEntry(path=rel, change="created")
                return
            if lp is None:
                yield DiffEntry(path=rel, change="deleted")
                return
            assert mp is not None
            yield from diff_entry(mp, lp, parts[-1], rel, False, os.fstat(mp).st_dev,
                                  os.fstat(lp).st_dev)
        finally:
            for fd in (mp, lp):
                if fd is not None:
                    os.close(fd)
