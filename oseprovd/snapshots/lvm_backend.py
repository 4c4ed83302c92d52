"""LVM thin backend: `lvcreate --snapshot` of a thin volume, `lvconvert --merge` to roll
back. UNTESTED on a real LVM: this machine's kernel has no device-mapper (the argv and
the step logic are tested with a fake runner; a VM test is to follow).

Snapshots are thin LVs named `ose-<id>` beside the origin, read-only and skipped at
activation. A snapshot is accepted only if its LV uuid is the recorded one and its
origin is the configured volume. For undo and diff the snapshot is activated and
mounted read-only, nosuid, nodev, noexec in a root-owned 0700 directory.

Rollback merges a thin snapshot *of* the recorded snapshot, so the recorded one
survives the merge (which consumes the merged LV). When the origin is open (mounted),
LVM defers the merge to its next activation: reboot_required.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from oseprovd.errors import NotApplicable
from oseprovd.snapshots import treeops, treesync
from oseprovd.snapshots.backend import CreatedSnapshot
from oseprovd.snapshots.errors import (
    BackendFailed,
    NotRecorded,
    RollbackNotPossible,
    SnapshotNotFound,
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

Runner = Callable[[list[str]], str]
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def run_lvm(argv: list[str]) -> str:
    """Run an LVM tool; argv only, never a shell; a failure carries LVM's message."""
    r = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300,
                       env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                            "LVM_SUPPRESS_FD_WARNINGS": "1"})
    if r.returncode != 0:
        raise BackendFailed(f"{argv[0]} failed: {r.stderr.strip()[:500]}")
    return r.stdout


def _volume(config: SnapshotConfig) -> tuple[str, str]:
    if config.volume is None:
        raise RollbackNotPossible(f"config {config.name}: an lvm config needs `volume`")
    vg, lv = config.volume.split("/")
    return vg, lv


def snapshot_lv(snap_id: str) -> str:
    return f"ose-{check_snapshot_id(snap_id)}"


def merge_lv(op: str) -> str:
    return f"ose-merge-{check_op_id(op)}"


class LvmBackend:
    name = "lvm"

    def __init__(self, runner: Runner = run_lvm,
                 mount_dir: Path = Path("/run/oseprovd/snapshot-mounts")) -> None:
        self.run = runner
        self.mount_dir = mount_dir

    # -- LV facts --------------------------------------------------------------------

    def _lv(self, vg: str, lv: str) -> dict[str, str] | None:
        try:
            out = self.run(["lvs", "--noheadings", "--separator", "|", "--options",
                            "lv_uuid,origin,lv_attr", "--", f"{vg}/{lv}"])
        except BackendFailed:
            return None
        fields = [f.strip() for f in out.strip().split("|")]
        if len(fields) != 3:
            return None
        return {"uuid": fields[0], "origin": fields[1], "attr": fields[2]}

    def _check(self, config: SnapshotConfig, record: SnapshotRecord) -> tuple[str, str]:
        vg, lv = _volume(config)
        info = self._lv(vg, snapshot_lv(record.id))
        if info is None:
            raise SnapshotNotFound(f"snapshot {record.id} is recorded but its LV is gone")
        if info["uuid"] != record.uuid or info["origin"] != lv:
            raise NotRecorded(f"{vg}/{snapshot_lv(record.id)} is not the snapshot recorded "
                              f"as {record.id}; it is left alone")
        return vg, snapshot_lv(record.id)

    # -- create / verify / delete ----------------------------------------------------

    def prepare(self, config: SnapshotConfig) -> None:
        vg, lv = _volume(config)
        if self._lv(vg, lv) is None:
            raise RollbackNotPossible(f"{vg}/{lv} is not a logical volume")

    def create(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot:
        vg, lv = _volume(config)
        name = snapshot_lv(snap_id)
        self.run(["lvcreate", "--snapshot", "--name", name, "--permission", "r",
                  "--setactivationskip", "y", "--yes", "--", f"{vg}/{lv}"])
        info = self._lv(vg, name)
        if info is None:
            raise BackendFailed(f"lvcreate made no {vg}/{name}")
        return CreatedSnapshot(uuid=info["uuid"])

    def open_browse(self, config: SnapshotConfig, record: SnapshotRecord) -> int:
        # Mounting a thin snapshot LV for browsing is possible but untested here (no
        # device-mapper on the build machine): refused until a VM test covers it.
        raise NotApplicable(f"{record.id}: browsing LVM snapshots is not supported yet")

    def describe(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot | None:
        vg, lv = _volume(config)
        info = self._lv(vg, snapshot_lv(snap_id))
        if info is None or info["origin"] != lv:
            return None
        return CreatedSnapshot(uuid=info["uuid"])

    def verify(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        self._check(config, record)

    def delete(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        vg, name = self._check(config, record)
        self.run(["lvremove", "--yes", "--", f"{vg}/{name}"])

    def will_change(self, config: SnapshotConfig, record: SnapshotRecord,
                    paths: Sequence[str], created: bool) -> None:
        return None  # the snapshot holds the whole volume

    def free_fraction(self, config: SnapshotConfig) -> float:
        return statvfs_free(config.snapshot_dir if config.backend == "copy"
                            else config.path)

    # -- mounted snapshot ------------------------------------------------------------

    @contextmanager
    def _mounted(self, config: SnapshotConfig, record: SnapshotRecord) -> Iterator[int]:
        vg, name = self._check(config, record)
        dev = f"/dev/{vg}/{name}"
        self.run(["lvchange", "--activate", "y", "--ignoreactivationskip", "--",
                  f"{vg}/{name}"])
        try:
            self.mount_dir.parent.mkdir(parents=True, exist_ok=True)
            os.close(open_private_dir(self.mount_dir, create=True))
            target = self.mount_dir / record.id
            with suppress(FileExistsError):
                os.mkdir(target, 0o700)
            fstype = self.run(["blkid", "--output", "value", "--match-tag", "TYPE",
                               "--", dev]).strip()
            options = "ro,nosuid,nodev,noexec" + (",nouuid,norecovery"
                                                   if fstype == "xfs" else ",noload"
                                                   if fstype == "ext4" else "")
            self.run(["mount", "-o", options, "--", dev, str(target)])
            try:
                fd = os.open(target, _DIR)
                try:
                    yield fd
                finally:
                    os.close(fd)
            finally:
                self.run(["umount", "--", str(target)])
                with suppress(OSError):
                    os.rmdir(target)
        finally:
            with suppress(BackendFailed):
                self.run(["lvchange", "--activate", "n", "--", f"{vg}/{name}"])

    def _open_live(self, config: SnapshotConfig) -> int:
        return os.open(config.path, _DIR)

    def diff(self, config: SnapshotConfig, record: SnapshotRecord,
             other: SnapshotRecord | None) -> Iterator[DiffEntry]:
        return treeops.diff_snapshot(lambda r: self._mounted(config, r),
                                     lambda: self._open_live(config), config.excluded(),
                                     record, other)

    def undo(self, config: SnapshotConfig, record: SnapshotRecord, paths: Sequence[str],
             op: str, journal: StepJournal) -> UndoResult:
        return treeops.undo_paths(lambda r: self._mounted(config, r),
                                  lambda: self._open_live(config), config.excluded(),
                                  record, paths, op, journal, "lvm.undo.path")

    def cleanup_undo(self, config: SnapshotConfig, op: str, paths: Sequence[str]) -> None:
        live = self._open_live(config)
        try:
            treesync.remove_undo_leftovers(live, op, paths)
        finally:
            os.close(live)

    # -- rollback --------------------------------------------------------------------

    def rollback(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                 journal: Journal, previous_id: str) -> RollbackResult:
        vg, name = self._check(config, record)
        _, lv = _volume(config)
        merge = merge_lv(op)
        journal.record("lvm.merge.begin", {"op": op, "merge_lv": merge})
        journal.record("lvm.merge.clone", {"op": op})
        self.run(["lvcreate", "--snapshot", "--name", merge, "--setactivationskip", "n",
                  "--yes", "--", f"{vg}/{name}"])
        journal.record("lvm.merge.convert", {"op": op})
        self.run(["lvconvert", "--merge", "--yes", "--", f"{vg}/{merge}"])
        origin = self._lv(vg, lv)
        # attr[0] "O": origin with a merging snapshot, i.e. the merge waits for the
        # origin's next activation (it is open now).
        deferred = origin is not None and origin["attr"][:1] == "O"
        return RollbackResult(snapshot=record.id, reboot_required=deferred)

    def recover(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                steps: Sequence[tuple[str, dict[str, Any]]],
                journal: Journal) -> RecoveryOutcome:
        names = {s for s, _ in steps}
        if "lvm.merge.begin" not in names:
            return RecoveryOutcome(op=op, action="rollback", outcome="nothing")
        vg, lv = _volume(config)
        merge = merge_lv(op)
        info = self._lv(vg, merge)
        origin = self._lv(vg, lv)
        merging = origin is not None and origin["attr"][:1] == "O"
        if "lvm.merge.convert" in names and (info is None or merging):
            return RecoveryOutcome(op=op, action="rollback", outcome="finished")
        if info is not None:
            self.run(["lvremove", "--yes", "--", f"{vg}/{merge}"])
        return RecoveryOutcome(op=op, action="rollback", outcome="reverted")
