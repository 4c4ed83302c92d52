"""LVM backend without LVM: the argv it runs and its decisions, against a fake runner
that plays lvs. What LVM really does is tested in a VM: tests/vm/test_lvm_in_vm.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from oseprovd.snapshots.errors import InvalidSnapshotId, NotRecorded, SnapshotNotFound
from oseprovd.snapshots.journal import MemoryJournal
from oseprovd.snapshots.lvm_backend import LvmBackend
from oseprovd.snapshots.models import SnapshotConfig, SnapshotRecord

CFG = SnapshotConfig(name="data", backend="lvm", path=Path("/srv/data"),
                     snapshot_dir=Path("/run/x"), volume="vg0/data")


class FakeLvm:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lvs: dict[str, dict[str, str]] = {
            "vg0/data": {"uuid": "U-origin", "origin": "", "attr": "Vwi-aotz--",
                         "pool": "pool"}}

    def __call__(self, argv: list[str]) -> str:
        from oseprovd.snapshots.errors import BackendFailed

        self.calls.append(argv)
        if argv[0] == "lvrename":
            assert argv[1] == "--", argv
            vg, old, new = argv[2:]
            self.lvs[f"{vg}/{new}"] = self.lvs.pop(f"{vg}/{old}")
            return ""
        target = argv[-1]
        assert argv[-2] == "--", argv  # positional after "--", always
        if argv[0] == "lvs":
            lv = self.lvs.get(target)
            if lv is None:
                raise BackendFailed("not found")
            return f"  {lv['uuid']}|{lv['origin']}|{lv['attr']}|{lv['pool']}\n"
        if argv[0] == "lvcreate":
            vg, origin = target.split("/")
            name = argv[argv.index("--name") + 1]
            self.lvs[f"{vg}/{name}"] = {"uuid": f"U-{name}", "origin": origin,
                                        "attr": "Vri---tz-k", "pool": "pool"}
        if argv[0] == "lvremove":
            del self.lvs[target]
        return ""


def record(snap_id: str, uuid: str) -> SnapshotRecord:
    return SnapshotRecord(id=snap_id, config="data", number=int(snap_id.split("-")[1]),
                          backend="lvm", created=datetime.now(UTC), uuid=uuid)


def test_create_verify_delete() -> None:
    fake = FakeLvm()
    be = LvmBackend(runner=fake)
    made = be.create(CFG, "data-1")
    assert made.uuid == "U-ose-data-1"
    assert fake.calls[0] == ["lvcreate", "--snapshot", "--name", "ose-data-1", "--permission",
                             "r", "--setactivationskip", "y", "--yes", "--", "vg0/data"]
    rec = record("data-1", made.uuid)
    be.verify(CFG, rec)
    be.delete(CFG, rec)
    assert fake.calls[-1] == ["lvremove", "--yes", "--", "vg0/ose-data-1"]


def test_refuses_unrecorded_or_foreign() -> None:
    fake = FakeLvm()
    be = LvmBackend(runner=fake)
    fake.lvs["vg0/ose-data-2"] = {"uuid": "U-user", "origin": "data", "attr": "V",
                                  "pool": "pool"}
    with pytest.raises(NotRecorded):
        be.verify(CFG, record("data-2", "U-recorded"))
    # the recorded uuid, but in another pool: not a snapshot of this volume
    fake.lvs["vg0/ose-data-3"] = {"uuid": "U3", "origin": "other", "attr": "V",
                                  "pool": "pool2"}
    with pytest.raises(NotRecorded):
        be.verify(CFG, record("data-3", "U3"))
    with pytest.raises(SnapshotNotFound):
        be.verify(CFG, record("data-4", "U4"))
    assert not any(c[0] == "lvremove" for c in fake.calls)


def test_rollback_swaps_a_clone_in_and_recovery() -> None:
    fake = FakeLvm()
    be = LvmBackend(runner=fake)
    rec = record("data-1", be.create(CFG, "data-1").uuid)
    journal = MemoryJournal()
    op = "ab" * 8
    result = be.rollback(CFG, rec, op, journal, "data-2")
    assert result.reboot_required  # the volume is open (attr "o")
    assert result.previous == "data-2"
    clone = f"ose-clone-{op}"
    assert ["lvcreate", "--snapshot", "--name", clone, "--permission", "rw",
            "--setactivationskip", "n", "--activate", "n", "--yes", "--",
            "vg0/ose-data-1"] in fake.calls
    assert ["lvrename", "--", "vg0", "data", "ose-data-2"] in fake.calls
    assert ["lvrename", "--", "vg0", clone, "data"] in fake.calls
    assert fake.lvs["vg0/ose-data-2"]["uuid"] == "U-origin"
    assert fake.lvs["vg0/data"]["uuid"] == f"U-{clone}"
    assert "vg0/ose-data-1" in fake.lvs  # the recorded snapshot is kept
    # killed after the clone, before the rename: the clone is removed
    fake2 = FakeLvm()
    be2 = LvmBackend(runner=fake2)
    rec2 = record("data-1", be2.create(CFG, "data-1").uuid)
    op2 = "cd" * 8
    fake2.lvs[f"vg0/ose-clone-{op2}"] = {"uuid": "M", "origin": "ose-data-1",
                                         "attr": "V", "pool": "pool"}
    steps = [("lvm.swap.begin", {"op": op2, "previous": "ose-data-2",
                                 "volume_uuid": "U-origin"}),
             ("lvm.swap.clone", {"op": op2})]
    assert be2.recover(CFG, rec2, op2, steps, MemoryJournal()).outcome == "reverted"
    assert f"vg0/ose-clone-{op2}" not in fake2.lvs
    assert fake2.lvs["vg0/data"]["uuid"] == "U-origin"
    # killed after the volume's rename: finished forward
    fake2.lvs[f"vg0/ose-clone-{op2}"] = {"uuid": "M", "origin": "ose-data-1",
                                         "attr": "V", "pool": "pool"}
    fake2(["lvrename", "--", "vg0", "data", "ose-data-2"])
    assert be2.recover(CFG, rec2, op2, steps, MemoryJournal()).outcome == "finished"
    assert fake2.lvs["vg0/data"]["uuid"] == "M"
    assert fake2.lvs["vg0/ose-data-2"]["uuid"] == "U-origin"
    # a journal naming someone else's LV as "previous" is refused
    bad = [("lvm.swap.begin", {"op": op2, "previous": "../root",
                               "volume_uuid": "U-origin"})]
    with pytest.raises(InvalidSnapshotId):
        be2.recover(CFG, rec2, op2, bad, MemoryJournal())


@pytest.mark.parametrize("bad", ["-vg/x", "vg/-x", "vg/../x", "vg", "vg/x/y", "../x",
                                 "vg/.x", "vg/x y", "vg/x;rm", "vg/$(x)"])
def test_volume_names_are_strict(bad: str) -> None:
    with pytest.raises(ValidationError):
        SnapshotConfig(name="d", backend="lvm", path=Path("/srv"), snapshot_dir=Path("/r"),
                       volume=bad)
