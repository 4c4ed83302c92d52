"""The LVM thin backend against real LVM — run INSIDE the test VM only (lvm-job.sh).

It wipes the disk named by OSE_VM_LVM_DISK, so it refuses to run anywhere but in the
VM booted by tests/vm (its kernel command line has init=/ose-vm-init). Not collected by
the host's pytest (the file name doesn't match test_*.py); tests/vm/test_lvm_in_vm.py
boots the VM and asserts on the junit XML this writes.

Ground truth is LVM's own report (`lvs --reportformat json`) and the filesystem read
back after a rollback (tests/harness/treemanifest: sha256, lstat, xattrs, ACLs), never
the engine's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oseprovd.errors import InvalidArguments
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.errors import NotRecorded, SnapshotNotFound
from oseprovd.snapshots.journal import FileJournal
from oseprovd.snapshots.lvm_backend import LvmBackend, clone_lv, snapshot_lv
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

FIELDS = "lv_name,lv_uuid,origin,pool_lv,lv_attr,lv_skip_activation,data_percent"


def lvs() -> dict[str, dict[str, str]]:
    """Every LV of the VG as LVM reports it (JSON report, not the backend's parser)."""
    out = sh("lvs", "--reportformat", "json", "--options", FIELDS, "--", VG)
    return {lv["lv_name"]: lv for lv in json.loads(out)["report"][0]["lv"]}


def names_uuids(report: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: lv["lv_uuid"] for name, lv in report.items()}


def read_only(lv: dict[str, str]) -> bool:
    return lv["lv_attr"][1] == "r"


def active(lv: dict[str, str]) -> bool:
    return lv["lv_attr"][4] == "a"


def skipped(lv: dict[str, str]) -> bool:
    return lv["lv_skip_activation"] not in ("", "0")


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

    def reboot(self) -> None:
        """What a reboot does to the VG: all off, then activated as at boot (LVs
        flagged to skip activation stay off)."""
        sh("vgchange", "--activate", "n", "--", VG)
        sh("vgchange", "--activate", "y", "--", VG)


@pytest.fixture
def rig(pool: str, tmp_path: Path) -> Iterator[Rig]:
    sh("lvcreate", "--yes", "--virtualsize", "64M", "--thinpool", f"{VG}/{pool}",
       "--name", LV)
    # No lazy init: nothing writes to the volume behind the test's back.
    sh("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", "--",
       f"/dev/{VG}/{LV}")
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
        assert skipped(lv), lv
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


# -- rollback: a clone of the snapshot swapped in under the volume's name -------------

def test_rollback_of_an_unmounted_volume_is_exact_and_can_be_undone(rig: Rig) -> None:
    oddtree.build(rig.live / "odd")
    write(rig.live, STATE_A)
    os.sync()
    want = treemanifest.manifest(rig.live, exclude=(b"lost+found",))
    rec = rig.engine.create_snapshot("data", "a")
    oddtree.change(rig.live / "odd")
    change_files(rig.live)
    os.sync()
    changed = treemanifest.manifest(rig.live, exclude=(b"lost+found",))
    old_uuid = lvs()[LV]["lv_uuid"]
    rig.umount()
    result = rig.engine.rollback(rec.id)
    assert result.snapshot == rec.id and not result.reboot_required
    assert result.previous == "data-2"
    now = lvs()
    assert not any(n.startswith("ose-clone-") for n in now), now
    # The live state before the rollback is kept as a recorded, read-only snapshot.
    prev = now[snapshot_lv("data-2")]
    assert prev["lv_uuid"] == old_uuid
    assert read_only(prev) and skipped(prev) and not active(prev), prev
    assert rig.engine.get_snapshot("data-2").uuid == old_uuid
    # The volume: writable, active, not skipped, a thin LV of the same pool.
    vol = now[LV]
    assert not read_only(vol) and active(vol) and not skipped(vol), vol
    assert vol["pool_lv"] == POOL and vol["lv_uuid"] not in (old_uuid, rec.uuid)
    # The recorded snapshot is untouched and still ours.
    assert now[snapshot_lv(rec.id)]["lv_uuid"] == rec.uuid
    rig.mount()
    got = treemanifest.manifest(rig.live, exclude=(b"lost+found",))
    assert treemanifest.differences(want, got) == []
    # ... and the rollback itself can be rolled back.
    rig.umount()
    rig.engine.rollback("data-2")
    rig.mount()
    got = treemanifest.manifest(rig.live, exclude=(b"lost+found",))
    assert treemanifest.differences(changed, got) == []


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
    assert [r.id for r in rig.engine.list_snapshots("data")] == ["data-1", "data-2",
                                                                  "data-3"]


def test_rollback_of_a_mounted_volume_needs_a_reboot(rig: Rig) -> None:
    write(rig.live, STATE_A)
    os.sync()
    want = sha256_tree(rig.live)
    rec = rig.engine.create_snapshot("data", "a")
    change_files(rig.live)
    os.sync()
    changed = sha256_tree(rig.live)
    old_uuid = lvs()[LV]["lv_uuid"]
    result = rig.engine.rollback(rec.id)
    assert result.reboot_required and result.previous == "data-2"
    assert sha256_tree(rig.live) == changed  # nothing changed under the mount
    now = lvs()
    prev = now[snapshot_lv("data-2")]
    assert prev["lv_uuid"] == old_uuid and prev["lv_attr"][5] == "o"  # still mounted
    assert skipped(prev)  # not activated by the next boot
    assert not skipped(now[LV]) and now[LV]["lv_uuid"] != old_uuid
    rig.umount()
    rig.reboot()
    now = lvs()
    assert active(now[LV]) and not active(now[snapshot_lv("data-2")])
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
    ids = [r.id for r in rig.engine.list_snapshots("data")]
    assert ids == [rec.id, "data-2", later.id]  # data-2: what was live before
    rig.engine.delete_snapshots(ids)
    assert set(lvs()) == {POOL, LV}
    assert rig.engine.list_snapshots("data") == []


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


def test_bad_ids_are_refused_before_lvm_runs(rig: Rig) -> None:
    rec = rig.engine.create_snapshot("data", "a")
    before = lvs()
    calls: list[Callable[[str], object]] = [
        rig.engine.rollback, lambda b: rig.engine.delete_snapshots([b]),
        lambda b: rig.engine.delete_snapshots([rec.id, b]),
        lambda b: list(rig.engine.diff(b)), lambda b: rig.engine.undo(b, ["etc"]),
        snapshot_lv, clone_lv]
    for bad in BAD_IDS:
        for call in calls:
            with pytest.raises(InvalidArguments):
                call(bad)
    assert names_uuids(lvs()) == names_uuids(before)
    assert [r.id for r in rig.engine.list_snapshots("data")] == [rec.id]


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
    assert now[LV]["lv_uuid"] == user[LV]["lv_uuid"]  # no rollback happened
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
    user = lvs()
    impostor = user[snapshot_lv(rec.id)]["lv_uuid"]
    rig.umount()
    with pytest.raises(NotRecorded):
        rig.engine.rollback(rec.id)
    with pytest.raises(NotRecorded):
        rig.engine.delete_snapshots([rec.id])
    now = lvs()
    assert now[snapshot_lv(rec.id)]["lv_uuid"] == impostor
    assert not any(n.startswith("ose-clone-") for n in now)
    assert now[LV]["lv_uuid"] == user[LV]["lv_uuid"]


def test_snapshot_of_another_volume_is_refused(rig: Rig, pool: str) -> None:
    """An LV with the recorded name, but a snapshot of another volume: refused."""
    sh("lvcreate", "--yes", "--virtualsize", "16M", "--thinpool", f"{VG}/{pool}",
       "--name", "other")
    rec = rig.engine.create_snapshot("data", "a")
    sh("lvremove", "--yes", "--", f"{VG}/{snapshot_lv(rec.id)}")
    sh("lvcreate", "--yes", "--snapshot", "--name", snapshot_lv(rec.id), "--",
       f"{VG}/other")
    rig.umount()
    user = lvs()
    with pytest.raises(NotRecorded):
        rig.engine.rollback(rec.id)
    with pytest.raises(NotRecorded):
        rig.engine.delete_snapshots([rec.id])
    assert names_uuids(lvs()) == names_uuids(user)


# -- a rollback interrupted between its steps ----------------------------------------

def _interrupted(rig: Rig, rec_id: str, op: str, *steps: str) -> None:
    begin = {"op": op, "config": "data", "snapshot": rec_id, "previous": "data-2"}
    rig.journal.record("rollback.begin", begin)
    data = {"lvm.swap.begin": {"op": op, "clone": clone_lv(op),
                               "previous": snapshot_lv("data-2"),
                               "volume_uuid": lvs()[LV]["lv_uuid"]}}
    for step in steps:
        rig.journal.record(step, data.get(step, {"op": op}))


def test_recovery_removes_a_clone_left_behind(rig: Rig) -> None:
    """Killed after the clone was made, before the rename: the clone goes, the volume
    and the recorded snapshot stay as they were."""
    write(rig.live, STATE_A)
    os.sync()
    rec = rig.engine.create_snapshot("data", "a")
    change_files(rig.live)
    os.sync()
    changed = sha256_tree(rig.live)
    op = "0123456789abcdef"
    _interrupted(rig, rec.id, op, "lvm.swap.begin", "lvm.swap.clone")
    sh("lvcreate", "--yes", "--snapshot", "--setactivationskip", "n", "--name",
       clone_lv(op), "--", f"{VG}/{snapshot_lv(rec.id)}")
    before = lvs()
    outcomes = rig.engine.recover(rig.journal.entries())
    assert [(o.action, o.outcome) for o in outcomes] == [("rollback", "reverted")]
    now = lvs()
    assert set(now) == set(before) - {clone_lv(op)}
    assert now[LV]["lv_uuid"] == before[LV]["lv_uuid"]
    assert now[snapshot_lv(rec.id)]["lv_uuid"] == rec.uuid
    assert rig.engine.pending(rig.journal.entries()) == []
    assert sha256_tree(rig.live) == changed


def test_recovery_finishes_a_rollback_killed_after_the_rename(rig: Rig) -> None:
    """Killed after the volume was renamed (the point of no return): recovery gives
    the clone the volume's name and records what was live as data-2."""
    write(rig.live, STATE_A)
    os.sync()
    want = sha256_tree(rig.live)
    rec = rig.engine.create_snapshot("data", "a")
    change_files(rig.live)
    os.sync()
    rig.umount()
    old_uuid = lvs()[LV]["lv_uuid"]
    op = "fedcba9876543210"
    _interrupted(rig, rec.id, op, "lvm.swap.begin", "lvm.swap.clone")
    sh("lvcreate", "--yes", "--snapshot", "--setactivationskip", "n", "--name",
       clone_lv(op), "--", f"{VG}/{snapshot_lv(rec.id)}")
    sh("lvrename", "--", VG, LV, snapshot_lv("data-2"))
    outcomes = rig.engine.recover(rig.journal.entries())
    assert [(o.action, o.outcome) for o in outcomes] == [("rollback", "finished")]
    now = lvs()
    assert clone_lv(op) not in now
    assert now[snapshot_lv("data-2")]["lv_uuid"] == old_uuid
    assert rig.engine.get_snapshot("data-2").uuid == old_uuid
    assert rig.engine.pending(rig.journal.entries()) == []
    rig.mount()
    assert sha256_tree(rig.live) == want


def test_free_space_is_the_pools(rig: Rig, pool: str) -> None:
    """Cleanup's free-space limit must read the thin pool (what snapshots use and what
    deleting them frees), not the filesystem."""
    def pool_free() -> float:
        out = sh("lvs", "--reportformat", "json", "--options",
                 "data_percent,metadata_percent", "--", f"{VG}/{pool}")
        row = json.loads(out)["report"][0]["lv"][0]
        return 1 - max(float(row["data_percent"]), float(row["metadata_percent"])) / 100

    backend = rig.engine.backends["lvm"]
    write(rig.live, {"big": os.urandom(48 << 20)})  # 15% of the pool
    os.sync()
    rec = rig.engine.create_snapshot("data", "a")
    (rig.live / "big").unlink()
    os.sync()  # ext4 trims only blocks freed in a committed transaction
    before = float(lvs()[LV]["data_percent"])
    sh("fstrim", "--", str(rig.live))  # the volume gives its blocks back to the pool...
    assert float(lvs()[LV]["data_percent"]) < before - 50, "fstrim freed nothing"
    held = backend.free_fraction(rig.config)
    assert abs(held - pool_free()) < 0.005
    assert held < 0.86  # ...but the snapshot still holds them
    rig.engine.delete_snapshots([rec.id])
    freed = backend.free_fraction(rig.config)
    assert abs(freed - pool_free()) < 0.005
    assert freed > held + 0.05  # (metadata use, about 11%, bounds what shows)
