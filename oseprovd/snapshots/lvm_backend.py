"""LVM thin backend: thin snapshots (`lvcreate --snapshot` of a thin volume); rollback
swaps a writable clone of the snapshot in under the volume's name. Tested on real LVM
in a VM (tests/vm/test_lvm_in_vm.py; this machine's kernel has no device-mapper).

Snapshots are thin LVs named `ose-<id>` in the volume's thin pool, read-only and
skipped at activation. A snapshot is accepted only if its LV uuid is the recorded one
and it is a thin LV of the volume's pool (the uuid is the identity; the `origin`
field is not: LVM re-parents or drops it when volumes are merged or renamed). For undo
and diff the snapshot is activated and mounted read-only, nosuid, nodev, noexec in a
root-owned 0700 directory.

Rollback does not use `lvconvert --merge`: a merge goes into the merged LV's own
origin, consumes that LV, and leaves every other snapshot of the volume without an
origin, so none of them could be merged afterwards (seen on LVM 2.03.16; see
docs/snapshots.md). Instead: a writable thin clone of the recorded snapshot is made,
the volume is renamed to `ose-<previous>` (kept, recorded by the engine as "before
rollback", so the rollback itself can be rolled back) and the clone takes the
volume's name. When the volume is open (mounted), it goes on running on the renamed
LV until the next boot, which activates the clone: reboot_required.
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
from oseprovd.snapshots.places import open_private_dir

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


def clone_lv(op: str) -> str:
    return f"ose-clone-{check_op_id(op)}"


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
                            "lv_uuid,origin,lv_attr,pool_lv", "--", f"{vg}/{lv}"])
        except BackendFailed:
            return None
        fields = [f.strip() for f in out.strip().split("|")]
        if len(fields) != 4:
            return None
        return {"uuid": fields[0], "origin": fields[1], "attr": fields[2],
                "pool": fields[3]}

    def _pool(self, vg: str, lv: str) -> str:
        info = self._lv(vg, lv)
        if info is None or not info["pool"]:
            raise RollbackNotPossible(f"{vg}/{lv} is not a thin logical volume")
        return info["pool"]

    def _in_pool(self, config: SnapshotConfig, name: str) -> dict[str, str] | None:
        """LV `name` if it is a thin LV of the volume's pool."""
        vg, lv = _volume(config)
        info = self._lv(vg, name)
        if info is None or info["pool"] != self._pool(vg, lv):
            return None
        return info

    def _check(self, config: SnapshotConfig, record: SnapshotRecord) -> tuple[str, str]:
        vg, _ = _volume(config)
        name = snapshot_lv(record.id)
        info = self._lv(vg, name)
        if info is None:
            raise SnapshotNotFound(f"snapshot {record.id} is recorded but its LV is gone")
        if info["uuid"] != record.uuid or self._in_pool(config, name) is None:
            raise NotRecorded(f"{vg}/{name} is not the snapshot recorded as {record.id}; "
                              "it is left alone")
        return vg, name

    # -- create / verify / delete ----------------------------------------------------

    def prepare(self, config: SnapshotConfig) -> None:
        vg, lv = _volume(config)
        self._pool(vg, lv)  # a thin volume, or nothing can be snapshotted cheaply

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
        # Not done yet: a browse mount would have to keep the snapshot LV active and
        # mounted for as long as the engine's bind mount lives, and release it after.
        raise NotApplicable(f"{record.id}: browsing LVM snapshots is not supported yet")

    def describe(self, config: SnapshotConfig, snap_id: str) -> CreatedSnapshot | None:
        info = self._in_pool(config, snapshot_lv(snap_id))
        return None if info is None else CreatedSnapshot(uuid=info["uuid"])

    def verify(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        self._check(config, record)

    def delete(self, config: SnapshotConfig, record: SnapshotRecord) -> None:
        vg, name = self._check(config, record)
        self.run(["lvremove", "--yes", "--", f"{vg}/{name}"])

    def will_change(self, config: SnapshotConfig, record: SnapshotRecord,
                    paths: Sequence[str], created: bool) -> None:
        return None  # the snapshot holds the whole volume

    def free_fraction(self, config: SnapshotConfig) -> float:
        """Free space of the thin pool (data or metadata, whichever is fuller): that
        is what snapshots use and what deleting them frees, not the filesystem's."""
        vg, lv = _volume(config)
        out = self.run(["lvs", "--noheadings", "--separator", "|", "--options",
                        "data_percent,metadata_percent", "--",
                        f"{vg}/{self._pool(vg, lv)}"])
        try:
            used = max(float(f.strip() or 0) for f in out.strip().split("|"))
        except ValueError:
            raise BackendFailed(f"lvs gave no usage for the pool of {vg}/{lv}") from None
        return max(0.0, 1.0 - used / 100)

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
        treesync.remove_undo_leftovers(lambda: self._open_live(config), op, paths)

    # -- rollback --------------------------------------------------------------------

    def rollback(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                 journal: Journal, previous_id: str) -> RollbackResult:
        vg, name = self._check(config, record)
        _, lv = _volume(config)
        live = self._lv(vg, lv)
        if live is None:
            raise RollbackNotPossible(f"{vg}/{lv} is gone")
        clone, previous = clone_lv(op), snapshot_lv(previous_id)
        if self._lv(vg, previous) is not None:
            raise RollbackNotPossible(f"{vg}/{previous} exists already; not overwritten")
        journal.record("lvm.swap.begin", {"op": op, "clone": clone, "previous": previous,
                                          "volume_uuid": live["uuid"]})
        self.run(["lvcreate", "--snapshot", "--name", clone, "--permission", "rw",
                  "--setactivationskip", "n", "--activate", "n", "--yes", "--",
                  f"{vg}/{name}"])
        journal.record("lvm.swap.clone", {"op": op})
        # attr[5] "o": the device is open (mounted): it keeps running on the renamed
        # LV, and the clone is what the next boot activates under the volume's name.
        in_use = live["attr"][5:6] == "o"
        self.run(["lvrename", "--", vg, lv, previous])
        self._finish_swap(vg, lv, clone, previous, in_use)
        return RollbackResult(snapshot=record.id, reboot_required=in_use,
                              previous=previous_id)

    def _finish_swap(self, vg: str, lv: str, clone: str, previous: str,
                     in_use: bool) -> None:
        """After the volume was renamed to `previous`: the clone takes its name, and
        `previous` becomes like any snapshot (read-only and skipped at activation;
        only the skip while it is still mounted)."""
        if self._lv(vg, clone) is not None:
            self.run(["lvrename", "--", vg, clone, lv])
        self.run(["lvchange", "--setactivationskip", "y", "--", f"{vg}/{previous}"])
        if not in_use:
            self.run(["lvchange", "--activate", "n", "--", f"{vg}/{previous}"])
            self.run(["lvchange", "--permission", "r", "--", f"{vg}/{previous}"])
            self.run(["lvchange", "--activate", "y", "--", f"{vg}/{lv}"])

    def recover(self, config: SnapshotConfig, record: SnapshotRecord, op: str,
                steps: Sequence[tuple[str, dict[str, Any]]],
                journal: Journal) -> RecoveryOutcome:
        begin = next((d for s, d in steps if s == "lvm.swap.begin"), None)
        if begin is None:
            return RecoveryOutcome(op=op, action="rollback", outcome="nothing")
        vg, lv = _volume(config)
        clone = clone_lv(op)
        # Only ever a name of ours ("ose-<id>"), whatever the journal says.
        previous = snapshot_lv(str(begin["previous"]).removeprefix("ose-"))
        live = self._lv(vg, lv)
        old = self._lv(vg, previous)
        if old is not None and old["uuid"] == begin["volume_uuid"]:
            # The volume was renamed: go forward (the rename is the point of no return).
            in_use = old["attr"][5:6] == "o"
            # Either the clone still waits for the name, or it has it already.
            if live is not None and self._lv(vg, clone) is not None:
                return RecoveryOutcome(op=op, action="rollback", outcome="failed",
                                       message=f"{vg}/{lv} and {vg}/{clone} both exist")
            self._finish_swap(vg, lv, clone, previous, in_use)
            return RecoveryOutcome(op=op, action="rollback", outcome="finished")
        if self._lv(vg, clone) is not None:
            self.run(["lvremove", "--yes", "--", f"{vg}/{clone}"])
        return RecoveryOutcome(op=op, action="rollback", outcome="reverted")
