"""The LVM thin backend against real LVM — run INSIDE the test VM only (lvm-job.sh).

It wipes the disk named by OSE_VM_LVM_DISK, so it refuses to run anywhere but in the
VM booted by tests/vm (its kernel command line has init=/ose-vm-init). Not collected by
the host's pytest (the file name doesn't match test_*.py); tests/vm/test_lvm_in_vm.py
boots the VM and asserts on the junit XML this writes.

Ground truth is LVM's own report (`lvs --reportformat json`) and the filesystem read
back after a merge (tests/harness/treemanifest: sha256, lstat, xattrs, ACLs), never
the engine's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oseprovd.errors import InvalidArguments
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.errors import NotRecorded, SnapshotNotFound
from oseprovd.snapshots.journal import FileJournal
from oseprovd.snapshots.lvm_backend import LvmBackend, merge_lv, snapshot_lv
from oseprovd.snapshots.models import Retention, SnapshotConfig
from oseprovd.snapshots.repository import SqliteSnapshotRepository, ensure_schema
from tests.harness import oddtree, treemanifest

DISK = os.environ.get("OSE_VM_LVM_DISK", "")
VG = "osevg"
POOL = "pool"
LV = "data"


def _in_test_vm() -> bool:
    try:
        return "init=/ose-vm-init" in Path("/proc/cmdline").read_text().split()
    except OSError:
        return False


if not (DISK and _in_test_vm()):
    pytest.skip("runs only inside the tests/vm VM (it wipes OSE_VM_LVM_DISK)",
                allow_module_level=True)


def sh(*argv: str) -> str:
    r = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise AssertionError(f"{argv} failed ({r.returncode}): {r.stderr}")
    return r.stdout


# -- ground truth: LVM's report -------------------------------------------------------

FIELDS = "lv_name,lv_uuid,origin,pool_lv,lv_attr,lv_active,lv_skip_activation,data_percent"


def lvs() -> dict[str, dict[str, str]]:
    """Every LV of the VG as LVM reports it (JSON report, not the backend's parser)."""
    out = sh("lvs", "--reportformat", "json", "--options", FIELDS, "--", VG)
    return {lv["lv_name"]: lv for lv in json.loads(out)["report"][0]["lv"]}


def read_only(lv: dict[str, str]) -> bool:
    return lv["lv_attr"][1] == "r"


def active(lv: dict[str, str]) -> bool:
    return lv["lv_attr"][4] == "a"


def mounted_under(path: Path) -> list[str]:
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(path))]


def sha256_tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# -- the rig: a VG on the disk, a thin pool, a thin LV with ext4 mounted ---------------

@pytest.fixture(scope="session")
def pool() -> Iterator[str]:
    sh("pvcreate", "--yes", "--force", "--force", "--", DISK)
    sh("vgcreate", "--yes", "--", VG, DISK)
    sh("lvcreate", "--yes", "--type", "thin-pool", "--size", "320M", "--name", POOL,
       "--", VG)
    yield POOL
    sh("vgremove", "--yes", "--force", "--", VG)


@dataclass
class Rig:
    engine: SnapshotEngine
    config: SnapshotConfig
    repo: SqliteSnapshotRepository
    journal: FileJournal
    mounts: Path

    @property
    def live(self) -> Path:
        return self.config.path

    def umount(self) -> None:
        sh("umount", "--", str(self.live))

    def mount(self) -> None:
        sh("mount", "-o", "noatime", "--", f"/dev/{VG}/{LV}", str(self.live))

    def reactivate(self) -> None:
        """What a reboot does to the origin: deactivate, activate (a deferred merge
        runs on activation)."""
        sh("lvchange", "--activate", "n", "--", f"{VG}/{LV}")
        sh("lvchange", "--activate", "y", "--", f"{VG}/{LV}")


@pytest.fixture
def rig(pool: str, tmp_path: Path) -> Iterator[Rig]:
    sh("lvcreate", "--yes", "--virtualsize", "64M", "--thinpool", f"{VG}/{pool}",
       "--name", LV)
    sh("mkfs.ext4", "-q", "-F", "--", f"/dev/{VG}/{LV}")
    live = tmp_path / "live"
    live.mkdir()
    cfg = SnapshotConfig(name="data", backend="lvm", path=live,
                         snapshot_dir=tmp_path / "snapdir", volume=f"{VG}/{LV}",
                         retention=Retention(number_limit=2, number_min_age=0,
                                             free_limit=0))
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    ensure_schema(conn)
    repo = SqliteSnapshotRepository(conn)
    journal = FileJournal(tmp_path / "journal.jsonl")
    mounts = tmp_path / "mounts"
    engine = SnapshotEngine({"data": cfg}, repo, {"lvm": LvmBackend(mount_dir=mounts)},
                            journal)
    r = Rig(engine, cfg, repo, journal, mounts)
    r.mount()
    try:
        yield r
    finally:
        for m in reversed(mounted_under(tmp_path)):
            subprocess.run(["umount", "--", m], check=False)
        conn.close()
        for name in lvs():
            if name != pool:
                subprocess.run(["lvremove", "--yes", "--", f"{VG}/{name}"], check=False)
        left = [n for n in lvs() if n != pool]
        assert not left, f"LVs left behind: {left}"


def write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


STATE_A = {"etc/app.conf": b"version=1\n", "bin/tool": os.urandom(200_000),
           "var/log/x": b"log\n" * 1000}


def change_files(root: Path) -> None:
    (root / "etc/app.conf").write_bytes(b"version=2\n")
    (root / "var/log/x").unlink()
    write(root, {"new/file": b"made after the snapshot\n"})
    os.chmod(root / "bin/tool", 0o700)


# -- create and list -------------------------------------------------------------------

def test_create_lists_what_lvm_has(rig: Rig) -> None:
    write(rig.live, STATE_A)
    os.sync()
    before = lvs()
    origin_uuid = before[LV]["lv_uuid"]
    a = rig.engine.create_snapshot("data", "first")
    b = rig.engine.create_snapshot("data", "second", {"k": "v"})
    assert [r.id for r in rig.engine.list_snapshots("data")] == [a.id, b.id]
    now = lvs()
    assert set(now) == set(before) | {snapshot_lv(a.id), snapshot_lv(b.id)}
    for rec in (a, b):
        lv = now[snapshot_lv(rec.id)]
        assert rec.backend == "lvm"
        assert rec.uuid == lv["lv_uuid"] and rec.uuid not in (origin_uuid, "")
        assert lv["origin"] == LV and lv["pool_lv"] == POOL
        assert read_only(lv), lv["lv_attr"]
        assert lv["lv_skip_activation"] not in ("", "0"), lv  # skipped at activation
        assert not active(lv), lv["lv_attr"]
    assert now[LV]["lv_uuid"] == origin_uuid and active(now[LV])


def test_snapshot_holds_the_data_of_its_time(rig: Rig) -> None:
    write(rig.live, STATE_A)
    os.sync()
    want = sha256_tree(rig.live)
    rec = rig.engine.create_snapshot("data", "a")
    change_files(rig.live)
    # Read the snapshot LV directly (not through the backend): activate, mount ro.
    name = f"{VG}/{snapshot_lv(rec.id)}"
    sh("lvchange", "--activate", "y", "--ignoreactivationskip", "--", name)
    mnt = rig.live.parent / "check"
    mnt.mkdir()
    sh("mount", "-o", "ro,noload", "--", f"/dev/{name}", str(mnt))
    try:
        got = sha256_tree(mnt)
    finally:
        sh("umount", "--", str(mnt))
        sh("lvchange", "--activate", "n", "--", name)
    assert got == want


# -- diff and undo (the snapshot mounted read-only by the backend) ----------------------

def test_diff_and_undo(rig: Rig) -> None:
    write(rig.live, STATE_A)
    os.sync()
    want = sha256_tree(rig.live)
    rec = rig.engine.create_snapshot("data", "a")
    change_files(rig.live)
    changes = {(e.path, e.change) for e in rig.engine.diff(rec.id)}
    assert ("etc/app.conf", "content") in changes
    assert ("var/log/x", "deleted") in changes
    assert ("new/file", "created") in changes or ("new", "created") in changes
    assert ("bin/tool", "metadata") in changes
    assert not mounted_under(rig.mounts), "diff left the snapshot mounted"
    assert not active(lvs()[snapshot_lv(rec.id)]), "diff left the snapshot active"

    result = rig.engine.undo(rec.id, ["etc/app.conf", "var/log/x"])
    assert result.changed >= 2
    got = sha256_tree(rig.live)
    assert got["etc/app.conf"] == want["etc/app.conf"]
    assert got["var/log/x"] == want["var/log/x"]
    assert (rig.live / "new/file").exists()  # not asked for: left alone
    assert not mounted_under(rig.mounts)
    assert not active(lvs()[snapshot_lv(rec.id)])


def test_undo_everything_restores_an_odd_tree_exactly(rig: Rig) -> None:
    tree = rig.live / "odd"
    oddtree.build(tree)
    os.sync()
    want = treemanifest.manifest(tree)
    rec = rig.engine.create_snapshot("data", "odd")
    oddtree.change(tree)
    rig.engine.undo(rec.id, ["odd"])
    assert treemanifest.differences(want, treemanifest.manifest(tree)) == []


# -- rollback: lvconvert --merge ---------------------------------------------------------

def test_rollback_of_an_unmounted_volume_is_exact(rig: Rig) -> None:
    oddtree.build(rig.live / "odd")
    write(rig.live, STATE_A)
    os.sync()
    want = treemanifest.manifest(rig.live, exclude=(b"lost+found",))
    rec = rig.engine.create_snapshot("data", "a")
    oddtree.change(rig.live / "odd")
    change_files(rig.live)
    os.sync()
    origin_uuid = lvs()[LV]["lv_uuid"]
    rig.umount()
    result = rig.engine.rollback(rec.id)
    assert result.snapshot == rec.id and not result.reboot_required
    now = lvs()
    assert not any(n.startswith("ose-merge-") for n in now), now
    assert now[LV]["lv_attr"][0] != "O", "merge still pending"
    assert now[LV]["lv_uuid"] == origin_uuid  # still the same LV to the system
    # The recorded snapshot survives (a copy of it was merged) and is still ours.
    assert now[snapshot_lv(rec.id)]["lv_uuid"] == rec.uuid
    rig.engine.get_snapshot(rec.id)
    rig.mount()
    got = treemanifest.manifest(rig.live, exclude=(b"lost+found",))
    assert treemanifest.differences(want, got) == []


def test_rollback_twice_to_the_same_snapshot(rig: Rig) -> None:
    write(rig.live, STATE_A)
    os.sync()
    want = sha256_tree(rig.live)
    rec = rig.engine.create_snapshot("data", "a")
    for _ in range(2):
        change_files(rig.live)
        os.sync()
        rig.umount()
        assert not rig.engine.rollback(rec.id).reboot_required
        rig.mount()
        assert sha256_tree(rig.live) == want


def test_rollback_of_a_mounted_volume_waits_for_activation(rig: Rig) -> None:
    write(rig.live, STATE_A)
    os.sync()
    want = sha256_tree(rig.live)
    rec = rig.engine.create_snapshot("data", "a")
    change_files(rig.live)
    os.sync()
    changed = sha256_tree(rig.live)
    result = rig.engine.rollback(rec.id)
    assert result.reboot_required
    assert lvs()[LV]["lv_attr"][0] == "O"  # origin with a merging snapshot
    assert sha256_tree(rig.live) == changed  # nothing happened under the mount
    rig.umount()
    rig.reactivate()  # the "reboot"
    now = lvs()
    assert now[LV]["lv_attr"][0] != "O"
    assert not any(n.startswith("ose-merge-") for n in now), now
    rig.mount()
    assert sha256_tree(rig.live) == want


# -- delete, retention ----------------------------------------------------------------

def test_delete_removes_the_lv(rig: Rig) -> None:
    a = rig.engine.create_snapshot("data", "a")
    b = rig.engine.create_snapshot("data", "b")
    assert rig.engine.delete_snapshots([a.id]) == [a.id]
    now = lvs()
    assert snapshot_lv(a.id) not in now and snapshot_lv(b.id) in now
    assert [r.id for r in rig.engine.list_snapshots("data")] == [b.id]


def test_delete_after_rollback(rig: Rig) -> None:
    rec = rig.engine.create_snapshot("data", "a")
    rig.umount()
    rig.engine.rollback(rec.id)
    rig.mount()
    later = rig.engine.create_snapshot("data", "after")
    rig.engine.delete_snapshots([rec.id, later.id])
    assert set(lvs()) == {POOL, LV}


def test_cleanup_number_limit(rig: Rig) -> None:
    recs = [rig.engine.create_snapshot("data", str(i), cleanup="number")
            for i in range(4)]
    result = rig.engine.cleanup("data")
    assert set(result.deleted) == {recs[0].id, recs[1].id}
    assert {n for n in lvs() if n.startswith("ose-")} == {snapshot_lv(recs[2].id),
                                                         snapshot_lv(recs[3].id)}


# -- refusals ------------------------------------------------------------------------

BAD_IDS = ["../x", "-y", "data-0", "Data-1", "data-1/../x", "data", "data-1 ", "",
           "data--1", "x" * 40 + "-1", "data-1;lvremove"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_ids_are_refused_before_lvm_runs(rig: Rig, bad: str) -> None:
    rec = rig.engine.create_snapshot("data", "a")
    before = lvs()
    for call in (lambda: rig.engine.rollback(bad),
                 lambda: rig.engine.delete_snapshots([bad]),
                 lambda: rig.engine.delete_snapshots([rec.id, bad]),
                 lambda: list(rig.engine.diff(bad)),
                 lambda: rig.engine.undo(bad, ["etc"]),
                 lambda: snapshot_lv(bad)):
        with pytest.raises(InvalidArguments):
            call()
    with pytest.raises(InvalidArguments):
        merge_lv(bad)
    assert lvs() == before


def test_user_made_lv_is_never_used(rig: Rig) -> None:
    """A user's snapshot with OSE's next name: skipped on create, never listed, rolled
    back to or deleted."""
    write(rig.live, STATE_A)
    os.sync()
    sh("lvcreate", "--yes", "--snapshot", "--name", "ose-data-1", "--", f"{VG}/{LV}")
    sh("lvcreate", "--yes", "--snapshot", "--name", "mine", "--", f"{VG}/{LV}")
    user = lvs()
    rec = rig.engine.create_snapshot("data", "ours")
    assert rec.id == "data-2"
    assert [r.id for r in rig.engine.list_snapshots("data")] == ["data-2"]
    change_files(rig.live)
    os.sync()
    changed = sha256_tree(rig.live)
    rig.umount()
    for call in (lambda: rig.engine.rollback("data-1"),
                 lambda: rig.engine.delete_snapshots(["data-1"]),
                 lambda: list(rig.engine.diff("data-1"))):
        with pytest.raises(SnapshotNotFound):
            call()
    rig.engine.cleanup("data")
    now = lvs()
    for name in ("ose-data-1", "mine"):
        assert now[name]["lv_uuid"] == user[name]["lv_uuid"]
    assert now[LV]["lv_attr"][0] != "O"
    rig.mount()
    assert sha256_tree(rig.live) == changed


def test_recorded_snapshot_replaced_by_a_user_lv_is_refused(rig: Rig) -> None:
    """The recorded LV is gone and a user made one with its name: its uuid differs, so
    it is neither rolled back to nor deleted."""
    write(rig.live, STATE_A)
    os.sync()
    rec = rig.engine.create_snapshot("data", "a")
    sh("lvremove", "--yes", "--", f"{VG}/{snapshot_lv(rec.id)}")
    sh("lvcreate", "--yes", "--snapshot", "--name", snapshot_lv(rec.id), "--",
       f"{VG}/{LV}")
    impostor = lvs()[snapshot_lv(rec.id)]["lv_uuid"]
    rig.umount()
    with pytest.raises(NotRecorded):
        rig.engine.rollback(rec.id)
    with pytest.raises(NotRecorded):
        rig.engine.delete_snapshots([rec.id])
    now = lvs()
    assert now[snapshot_lv(rec.id)]["lv_uuid"] == impostor
    assert not any(n.startswith("ose-merge-") for n in now)
    assert now[LV]["lv_attr"][0] != "O"


def test_snapshot_of_another_volume_is_refused(rig: Rig, pool: str) -> None:
    """An LV with the recorded name, but a snapshot of another volume: refused."""
    sh("lvcreate", "--yes", "--virtualsize", "16M", "--thinpool", f"{VG}/{pool}",
       "--name", "other")
    rec = rig.engine.create_snapshot("data", "a")
    sh("lvremove", "--yes", "--", f"{VG}/{snapshot_lv(rec.id)}")
    sh("lvcreate", "--yes", "--snapshot", "--name", snapshot_lv(rec.id), "--",
       f"{VG}/other")
    rig.umount()
    with pytest.raises(NotRecorded):
        rig.engine.rollback(rec.id)
    with pytest.raises(NotRecorded):
        rig.engine.delete_snapshots([rec.id])
    now = lvs()
    assert now[snapshot_lv(rec.id)]["origin"] == "other"
    assert now[LV]["lv_attr"][0] != "O"


# -- a rollback interrupted between its steps ----------------------------------------

def test_recovery_removes_a_merge_clone_left_behind(rig: Rig) -> None:
    """Killed after the clone was made, before the merge: recovery removes the clone
    and leaves the origin and the recorded snapshot alone."""
    write(rig.live, STATE_A)
    os.sync()
    want = sha256_tree(rig.live)
    rec = rig.engine.create_snapshot("data", "a")
    op = "0123456789abcdef"
    sh("lvcreate", "--yes", "--snapshot", "--setactivationskip", "n", "--name",
       merge_lv(op), "--", f"{VG}/{snapshot_lv(rec.id)}")
    for step, data in [("rollback.begin", {"op": op, "config": "data",
                                           "snapshot": rec.id, "previous": "data-2"}),
                       ("lvm.merge.begin", {"op": op, "merge_lv": merge_lv(op)}),
                       ("lvm.merge.clone", {"op": op})]:
        rig.journal.record(step, data)
    outcomes = rig.engine.recover(rig.journal.entries())
    assert [(o.action, o.outcome) for o in outcomes] == [("rollback", "reverted")]
    now = lvs()
    assert merge_lv(op) not in now
    assert now[snapshot_lv(rec.id)]["lv_uuid"] == rec.uuid
    assert sha256_tree(rig.live) == want
