"""org.ose.Snapshots1 on the real daemon, polkitd and bus, over a real btrfs loop image
mounted inside the daemon's --root. The truth is the filesystem: `btrfs` CLI for
subvolumes, sha256 and lstat for files, read by the test itself."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oseprovd.bus.convert import unwrap
from tests.harness.busclient import BusError, call, call_daemon, connect, error_of, single
from tests.harness.components import REPO_ROOT, missing, require
from tests.harness.daemon import DaemonProcess
from tests.harness.loopfs import loop_fs
from tests.harness.users import call_as
from tests.integration.test_osectl import no_traceback

pytestmark = pytest.mark.root

NAME = "org.ose.Provisioning1"
SNAPS = ("/org/ose/Provisioning1/Snapshots", "org.ose.Snapshots1")
PROPS = "org.freedesktop.DBus.Properties"
INVALID = "org.freedesktop.DBus.Error.InvalidArgs"
DENIED = "org.freedesktop.DBus.Error.AccessDenied"
NOT_FOUND = "org.ose.Error.NotFound"
ODD = b"caf\xe9 \x01.bin"  # not UTF-8, with a space and a control character

CONFIG = """\
backend = "btrfs"
path = "/srv/data-mnt/live"
snapshot_dir = "/srv/data-mnt/.snapshots"
[retention]
free_limit = 0
"""


@dataclass
class Rig:
    daemon: DaemonProcess
    mnt: Path  # where the filesystem is mounted (inside the daemon's root)

    @property
    def address(self) -> str:
        return self.daemon.bus_address

    @property
    def live(self) -> Path:
        return self.mnt / "live"

    @property
    def snapdir(self) -> Path:
        return self.mnt / ".snapshots"


def btrfs(*args: str) -> str:
    return subprocess.run([require("btrfs", "btrfs-progs"), *args], check=True,
                          capture_output=True, text=True).stdout


def subvolumes(mnt: Path) -> set[str]:
    out = btrfs("subvolume", "list", "-o", "--", str(mnt))
    return {line.split(" path ", 1)[1] for line in out.splitlines() if " path " in line}


def subvol_id(path: Path) -> int:
    for line in btrfs("subvolume", "show", "--", str(path)).splitlines():
        if line.strip().startswith("Subvolume ID:"):
            return int(line.split(":")[1])
    raise AssertionError(path)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def rig(ose_daemon) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    from oseprovd.system import btrfs as btrfs_sys

    if not btrfs_sys.available():
        missing("the btrfsutil bindings (python3-btrfsutil or pip btrfsutil<6.14)")
    d = ose_daemon.start(start=False, extra_args=["--snapshot-timer", "0"])
    srv = d.root / "srv"
    srv.mkdir()
    etc = d.root / "etc/ose/snapshots.d"
    etc.mkdir(parents=True)
    (etc / "data.toml").write_text(CONFIG)
    with loop_fs(srv, "btrfs", name="data") as mnt:
        try:
            btrfs("subvolume", "create", "--", str(mnt / "live"))
            d.start()
            yield Rig(d, mnt)
        finally:
            d.close()  # before the unmount: the daemon must not hold the filesystem


def scall(address: str, member: str, sig: str = "", *body: Any) -> Any:
    return single(call_daemon(address, *SNAPS, member, sig, *body))



def wait_job(address: str, path: str) -> tuple[str, dict[str, Any], Any]:
    async def go() -> tuple[str, dict[str, Any], Any]:
        bus = await connect(address)
        try:
            deadline = time.monotonic() + 60
            while True:
                (props,) = await call(bus, NAME, path, PROPS, "GetAll", "s", ["org.ose.Job1"])
                if props["State"].value not in ("queued", "running"):
                    result = {k: v.value for k, v in props["Result"].value.items()}
                    return props["State"].value, result, props["Error"].value
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            bus.disconnect()
    return asyncio.run(go())


def run_job(address: str, member: str, sig: str, *body: Any) -> dict[str, Any]:
    state, result, error = wait_job(address, scall(address, member, sig, *body))
    assert state == "succeeded", error
    return result


def all_pages(address: str, diff: int, limit: int) -> list[tuple[bytes, str]]:
    entries: list[tuple[bytes, str]] = []
    while True:
        page = scall(address, "GetDiffPage", "ttu", diff, len(entries), limit)
        entries += [(bytes(p), c) for p, c in page]
        if len(page) < limit:
            return entries


class Signals:
    """SnapshotCreated/SnapshotsDeleted seen on a connection subscribed before acting."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.seen: list[tuple[str, Any]] = []

    async def __aenter__(self) -> Signals:
        from tests.harness.busclient import dbus_call

        self.bus = await connect(self.address)
        self.bus.add_message_handler(self._on)
        await dbus_call(self.bus, "AddMatch", "s",
                        f"type='signal',interface='{SNAPS[1]}',path='{SNAPS[0]}'")
        return self

    def _on(self, msg: Any) -> None:
        if msg.interface == SNAPS[1] and msg.member in ("SnapshotCreated", "SnapshotsDeleted"):
            self.seen.append((msg.member, msg.body[0]))

    async def wait_for(self, member: str, value: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while (member, value) not in self.seen:
            assert time.monotonic() < deadline, (member, value, self.seen)
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: Any) -> None:
        self.bus.disconnect()


def build_tree(live: Path) -> None:
    (live / "a.txt").write_bytes(b"alpha\n" * 1000)
    (live / "keep.txt").write_bytes(b"keep me")
    (live / "dir").mkdir()
    (live / "dir/sub.txt").write_bytes(b"sub")
    os.chmod(live / "dir/sub.txt", 0o644)
    with open(os.fsencode(live) + b"/" + ODD, "wb") as f:
        f.write(b"odd bytes")


def change_tree(live: Path) -> None:
    (live / "a.txt").write_bytes(b"changed\n")
    (live / "keep.txt").unlink()
    (live / "new.txt").write_bytes(b"new")
    os.chmod(live / "dir/sub.txt", 0o600)
    with open(os.fsencode(live) + b"/" + ODD, "wb") as f:
        f.write(b"other bytes")


def test_create_diff_undo_rollback_delete(rig: Rig) -> None:
    addr = rig.address
    build_tree(rig.live)
    before = {p: sha(rig.live / p) for p in ("a.txt", "keep.txt", "dir/sub.txt")}
    odd_before = sha(Path(os.fsdecode(os.fsencode(rig.live) + b"/" + ODD)))

    async def create() -> str:
        async with Signals(addr) as sig:
            snap = await asyncio.to_thread(scall, addr, "CreateSnapshot", "ssa{ss}", "data",
                                           "before the change", {"ticket": "T-1"})
            await sig.wait_for("SnapshotCreated", snap)
            return str(snap)

    snap = asyncio.run(create())
    assert snap == "data-1"
    # Ground truth: a read-only subvolume at the snapshot place.
    assert ".snapshots/data-1" in subvolumes(rig.mnt)
    assert btrfs("property", "get", "-ts", "--", str(rig.snapdir / snap), "ro").strip() \
        == "ro=true"
    (configs,) = [scall(addr, "ListConfigs")]
    assert [(c["name"].value, c["backend"].value, c["path"].value) for c in configs] == [
        ("data", "btrfs", str(rig.live))]
    listed = scall(addr, "ListSnapshots", "s", "data")
    assert [r["id"].value for r in listed] == ["data-1"]
    record = scall(addr, "GetSnapshot", "s", snap)
    assert record["description"].value == "before the change"
    assert {k: v.value for k, v in record["userdata"].value.items()} == {"ticket": "T-1"}
    assert abs(record["created"].value - time.time()) < 60

    change_tree(rig.live)
    result = run_job(addr, "Diff", "ss", snap, "")
    entries = all_pages(addr, result["diff"], limit=2)  # paging in small steps
    assert sorted(entries) == sorted([
        (b"a.txt", "content"), (b"keep.txt", "deleted"), (b"new.txt", "created"),
        (b"dir/sub.txt", "metadata"), (ODD, "content")])
    assert result["entries"] == 5 and result["content"] == 2
    assert scall(addr, "GetDiffPage", "ttu", result["diff"], 5, 10) == []

    undone = run_job(addr, "UndoChange", "saay", snap, [b"a.txt", b"keep.txt", ODD])
    assert undone["changed"] >= 3
    assert sha(rig.live / "a.txt") == before["a.txt"]
    assert sha(rig.live / "keep.txt") == before["keep.txt"]
    assert sha(Path(os.fsdecode(os.fsencode(rig.live) + b"/" + ODD))) == odd_before
    assert (rig.live / "new.txt").exists()  # not asked for: left alone
    assert os.lstat(rig.live / "dir/sub.txt").st_mode & 0o777 == 0o600

    old_id = subvol_id(rig.live)

    async def rollback() -> dict[str, Any]:
        async with Signals(addr) as sig:
            res = await asyncio.to_thread(run_job, addr, "Rollback", "s", snap)
            await sig.wait_for("SnapshotCreated", res["previous"])
            return res

    rolled = asyncio.run(rollback())
    assert rolled["reboot_required"] is False and rolled["snapshot"] == snap
    assert subvol_id(rig.live) != old_id
    assert not (rig.live / "new.txt").exists()
    assert os.lstat(rig.live / "dir/sub.txt").st_mode & 0o777 == 0o644
    assert {p: sha(rig.live / p) for p in before} == before
    # What was live before is kept as a recorded snapshot (a rollback can be undone).
    assert f".snapshots/{rolled['previous']}" in subvolumes(rig.mnt)
    assert subvol_id(rig.snapdir / rolled["previous"]) == old_id

    async def delete() -> list[str]:
        async with Signals(addr) as sig:
            gone = await asyncio.to_thread(scall, addr, "DeleteSnapshots", "as", [snap])
            await sig.wait_for("SnapshotsDeleted", [snap])
            return list(gone)

    assert asyncio.run(delete()) == [snap]
    assert ".snapshots/data-1" not in subvolumes(rig.mnt)
    assert error_of(scall, addr, "GetSnapshot", "s", snap) == NOT_FOUND
    cleaned = run_job(addr, "Cleanup", "s", "data")
    assert cleaned["config"] == "data"


def test_refusals(rig: Rig) -> None:
    addr = rig.address
    for bad in ("../../x", "-y", "data-0", "data/1", ""):
        assert error_of(scall, addr, "GetSnapshot", "s", bad) == INVALID, bad
        assert error_of(scall, addr, "DeleteSnapshots", "as", [bad]) == INVALID, bad
        assert error_of(scall, addr, "Rollback", "s", bad) == INVALID, bad
    for member, sig in (("ListSnapshots", "s"), ("Cleanup", "s")):
        assert error_of(scall, addr, member, sig, "nosuch") == NOT_FOUND
    assert error_of(scall, addr, "CreateSnapshot", "ssa{ss}", "nosuch", "", {}) == NOT_FOUND
    assert error_of(scall, addr, "CreateSnapshot", "ssa{ss}", "../x", "", {}) == INVALID

    snap = scall(addr, "CreateSnapshot", "ssa{ss}", "data", "", {})
    for path in (b"../etc/passwd", b"a/../../b", b"", b"x\0y"):
        assert error_of(scall, addr, "UndoChange", "saay", snap, [path]) == INVALID, path

    # A subvolume a user made at a free snapshot place is no snapshot of ours.
    btrfs("subvolume", "snapshot", "-r", "--", str(rig.live), str(rig.snapdir / "data-7"))
    assert error_of(scall, addr, "GetSnapshot", "s", "data-7") == NOT_FOUND
    assert error_of(scall, addr, "DeleteSnapshots", "as", ["data-7"]) == NOT_FOUND
    assert error_of(scall, addr, "Rollback", "s", "data-7") == NOT_FOUND
    # ... nor is one swapped in under a recorded name.
    btrfs("subvolume", "delete", "--", str(rig.snapdir / snap))
    btrfs("subvolume", "snapshot", "-r", "--", str(rig.live), str(rig.snapdir / snap))
    assert error_of(scall, addr, "DeleteSnapshots", "as", [snap]) == "org.ose.Error.NotRecorded"
    state, _, error = wait_job(addr, scall(addr, "Rollback", "s", snap))
    assert state == "failed" and error[0] == "NotRecorded"
    assert {".snapshots/data-7", f".snapshots/{snap}"} <= subvolumes(rig.mnt)  # untouched


def test_who_may_do_what(rig: Rig, test_users) -> None:  # type: ignore[no-untyped-def]
    addr = rig.address

    def as_client(member: str, sig: str, *body: Any) -> Any:
        try:
            return ("ok", unwrap(scall(addr, member, sig, *body)))  # plain: it is pickled
        except BusError as e:
            return (e.name, None)

    denied = call_as(test_users.user, as_client, "CreateSnapshot", "ssa{ss}", "data", "", {})
    assert denied[0] == DENIED
    assert not any(p.startswith(".snapshots/") for p in subvolumes(rig.mnt))
    outcome, snap = call_as(test_users.admin, as_client, "CreateSnapshot", "ssa{ss}",
                            "data", "by the admin", {})
    assert outcome == "ok" and f".snapshots/{snap}" in subvolumes(rig.mnt)
    listed = call_as(test_users.user, as_client, "ListSnapshots", "s", "data")
    assert listed[0] == "ok" and [r["id"] for r in listed[1]] == [snap]
    for member, sig, body in (("DeleteSnapshots", "as", [[snap]]), ("Rollback", "s", [snap]),
                              ("UndoChange", "saay", [snap, [b"."]]),
                              ("Diff", "ss", [snap, ""]), ("Cleanup", "s", ["data"]),
                              ("MountSnapshot", "s", [snap]),
                              ("UnmountSnapshot", "s", [snap])):
        assert call_as(test_users.user, as_client, member, sig, *body)[0] == DENIED, member
    # A diff's pages belong to whoever ran it (and to those allowed to diff).
    diff = run_job(addr, "Diff", "ss", snap, "")["diff"]
    assert call_as(test_users.user, as_client, "GetDiffPage", "ttu", diff, 0, 10)[0] == DENIED
    assert f".snapshots/{snap}" in subvolumes(rig.mnt)


def osectl_argv(address: str) -> list[str]:
    # This checkout's osectl (the installed entry point may be another checkout's).
    return [sys.executable, "-m", "osectl.main", "--address", address, "--no-ask-password"]


def osectl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*osectl_argv(address), *args], cwd=REPO_ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, check=False)


def test_osectl_snapshot(rig: Rig) -> None:
    addr = rig.address
    build_tree(rig.live)

    def ok(*args: str) -> Any:
        proc = osectl(addr, "--json", "snapshot", *args)
        assert proc.returncode == 0, proc.stderr + proc.stdout
        no_traceback(proc)
        return json.loads(proc.stdout.splitlines()[-1])

    assert [c["name"] for c in ok("configs")] == ["data"]
    created = ok("create", "data", "--description", "from osectl", "--userdata", "k=v")
    snap = created["id"]
    assert f".snapshots/{snap}" in subvolumes(rig.mnt)
    assert [r["id"] for r in ok("list", "data")] == [snap]
    assert ok("show", snap)["userdata"] == {"k": "v"}
    # mount runs a command in the snapshot's directory, then unmounts.
    shown = osectl(addr, "snapshot", "mount", snap, "--", "sh", "-c",
                   'head -c 6 a.txt; printf "|%s" "$OSE_SNAPSHOT_MOUNT"')
    assert shown.returncode == 0, shown.stderr
    text, path = shown.stdout.split("|")
    assert text == "alpha\n" and path == str(rig.daemon.state_dir.resolve() / "mounts" / snap)
    assert mount_options(Path(path)) is None
    (rig.live / "a.txt").write_bytes(b"changed")
    diff = ok("diff", snap)
    assert diff == [{"path": "a.txt", "change": "content"}]
    ok("undo", snap, "a.txt")
    assert (rig.live / "a.txt").read_bytes() == b"alpha\n" * 1000
    # delete asks first; without a terminal and without --yes it refuses
    refused = osectl(addr, "snapshot", "delete", snap)
    assert refused.returncode != 0 and f".snapshots/{snap}" in subvolumes(rig.mnt)
    assert ok("delete", "--yes", snap)["deleted"] == [snap]
    assert f".snapshots/{snap}" not in subvolumes(rig.mnt)
    human = osectl(addr, "--no-color", "snapshot", "list", "data")
    assert human.returncode == 0 and "No snapshots" in human.stdout


def test_start_recovers_the_journal_and_the_timer_takes_snapshots(rig: Rig) -> None:
    """A create that a killed daemon journaled but never recorded: the next start
    removes what it made (ground truth: the subvolume list) and empties the journal."""
    d = rig.daemon
    d.stop()
    rig.snapdir.mkdir(mode=0o700, exist_ok=True)
    btrfs("subvolume", "snapshot", "-r", "--", str(rig.live), str(rig.snapdir / "data-3"))
    journal = d.state_dir / "snapshots.journal"
    journal.write_text(json.dumps({"step": "snapshot.create", "data": {
        "op": "0123456789abcdef", "config": "data", "snapshot": "data-3"}}) + "\n")
    d.extra_args[d.extra_args.index("--snapshot-timer") + 1] = "0.5"
    d.start()
    assert ".snapshots/data-3" not in subvolumes(rig.mnt)
    assert journal.read_text() == ""
    assert "snapshots: create left by a stopped daemon: reverted" in d.log_text()

    async def timeline() -> str:
        async with Signals(rig.address) as sig:
            deadline = time.monotonic() + 15
            while not any(m == "SnapshotCreated" for m, _ in sig.seen):
                assert time.monotonic() < deadline, "no timeline snapshot"
                await asyncio.sleep(0.05)
            return str(next(v for m, v in sig.seen if m == "SnapshotCreated"))

    snap = asyncio.run(timeline())
    assert f".snapshots/{snap}" in subvolumes(rig.mnt)
    record = scall(rig.address, "GetSnapshot", "s", snap)
    assert record["cleanup"].value == "timeline"


def test_any_arguments_get_an_answer_never_a_traceback(rig: Rig) -> None:
    """Hypothesis-made ids, configs, descriptions, user data and byte paths: every
    answer is a success or a named error; nothing outside the snapshot dir changes."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    snap = scall(rig.address, "CreateSnapshot", "ssa{ss}", "data", "", {})
    (rig.live / "g").write_bytes(b"y")
    diff = run_job(rig.address, "Diff", "ss", snap, "")["diff"]
    chars = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
    ids = st.one_of(st.text(chars, max_size=40),
                    st.from_regex(r"[a-z]{1,5}-[0-9]{1,3}", fullmatch=True),
                    st.sampled_from(["data-1", "data-99", "../../x", "-y", "data-01"]))
    configs = st.one_of(st.text(chars, max_size=40), st.sampled_from(["data", "DATA", "d"]))
    paths = st.lists(st.binary(max_size=30), max_size=4)
    calls = st.one_of(
        ids.map(lambda i: ("GetSnapshot", "s", [i])),
        configs.map(lambda c: ("ListSnapshots", "s", [c])),
        st.lists(ids, max_size=3).map(lambda x: ("DeleteSnapshots", "as", [x])),
        ids.map(lambda i: ("Rollback", "s", [i])),
        ids.map(lambda i: ("MountSnapshot", "s", [i])),
        ids.map(lambda i: ("UnmountSnapshot", "s", [i])),
        st.tuples(ids, ids).map(lambda t: ("Diff", "ss", list(t))),
        st.tuples(ids, paths).map(lambda t: ("UndoChange", "saay", list(t))),
        st.tuples(configs.filter(lambda c: c != "data"), st.text(chars, max_size=2000),
                  st.dictionaries(st.text(chars, max_size=70), st.text(chars, max_size=10),
                                  max_size=40)).map(
            lambda t: ("CreateSnapshot", "ssa{ss}", list(t))),
        st.tuples(st.one_of(st.integers(0, 2**64 - 1), st.just(diff)),
                  st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 3)),
                  st.integers(0, 2**32 - 1)).map(lambda t: ("GetDiffPage", "ttu", list(t))),
    )
    allowed = {INVALID, NOT_FOUND, "org.ose.Error.NotRecorded", "org.ose.Error.Busy",
               "org.ose.Error.RateLimited"}
    before = subvolumes(rig.mnt)
    outcomes: list[str] = []
    (rig.live / "f").write_bytes(b"x")

    async def main() -> None:
        bus = await connect(rig.address)
        try:
            @settings(max_examples=120, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(calls)
            def one(c: tuple[str, str, list[Any]]) -> None:
                member, sig, body = c
                if member in ("Rollback", "DeleteSnapshots", "UndoChange") and snap in str(body):
                    return  # the one real snapshot and the live tree stay
                fut = asyncio.run_coroutine_threadsafe(
                    call(bus, NAME, *SNAPS, member, sig, body, timeout=30), loop)
                try:
                    fut.result()
                    outcomes.append("ok")
                except BusError as e:
                    outcomes.append(e.name)
                    assert e.name in allowed, (member, body, e.name, e.text)

            loop = asyncio.get_running_loop()
            await asyncio.to_thread(one)
        finally:
            bus.disconnect()

    asyncio.run(main())
    assert len(outcomes) > 50 and "ok" in outcomes
    assert rig.daemon.running
    assert subvolumes(rig.mnt) == before
    assert (rig.live / "f").read_bytes() == b"x"


def mount_options(path: Path) -> set[str] | None:
    """The kernel's per-mount options of the mount at exactly `path` (findmnt(8))."""
    r = subprocess.run([require("findmnt", "util-linux"), "-n", "-o", "VFS-OPTIONS",
                        "--mountpoint", str(path)], capture_output=True, text=True)
    return set(r.stdout.strip().split(",")) if r.returncode == 0 and r.stdout.strip() else None


def wait_unmounted(path: Path, timeout: float = 10) -> None:
    """Until nothing is mounted at `path` and its mount point is gone: the daemon
    unmounts, then removes the directory, so a test that looks between the two steps
    must wait for both."""
    deadline = time.monotonic() + timeout
    while mount_options(path) is not None or os.path.lexists(path):
        assert time.monotonic() < deadline, (
            f"{path} is still {'mounted' if mount_options(path) else 'there'}")
        time.sleep(0.05)


def test_browse_mount_lives_as_long_as_its_caller(rig: Rig) -> None:
    addr = rig.address
    (rig.live / "file.txt").write_text("in the snapshot")
    snap = scall(addr, "CreateSnapshot", "ssa{ss}", "data", "browse", {})
    mounts_dir = rig.daemon.state_dir.resolve() / "mounts"
    for bad in ("../x", "-y", "data-1/../../etc", "x" * 100):
        assert error_of(scall, addr, "MountSnapshot", "s", bad) == INVALID, bad
    assert error_of(scall, addr, "MountSnapshot", "s", "data-99") == NOT_FOUND
    assert error_of(scall, addr, "UnmountSnapshot", "s", snap) == NOT_FOUND

    async def hold_then_leave() -> str:
        bus = await connect(addr)
        try:
            (path,) = await call(bus, NAME, *SNAPS, "MountSnapshot", "s", [snap])
            (again,) = await call(bus, NAME, *SNAPS, "MountSnapshot", "s", [snap])
            assert again == path
            target = Path(path)
            assert target == mounts_dir / snap
            opts = mount_options(target)
            assert opts is not None and {"ro", "nosuid", "nodev", "noexec"} <= opts, opts
            st = os.lstat(mounts_dir)
            assert st.st_uid == 0 and st.st_mode & 0o7777 == 0o700
            assert (target / "file.txt").read_text() == "in the snapshot"
            return path
        finally:
            bus.disconnect()  # the caller leaves: its mount goes

    path = Path(asyncio.run(hold_then_leave()))
    wait_unmounted(path)

    # `osectl snapshot mount ID` holds the mount until it is told to stop.
    holder = subprocess.Popen([*osectl_argv(addr), "--json", "snapshot", "mount", snap],
                              cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        held = json.loads(holder.stdout.readline())
        assert held["path"] == str(path) and mount_options(path) is not None
    finally:
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(30) == 0, holder.stderr.read() if holder.stderr else ""
    assert mount_options(path) is None

    # An explicit unmount, then one held at daemon stop.
    path = Path(scall(addr, "MountSnapshot", "s", snap))  # released as scall disconnects
    wait_unmounted(path)

    async def held_at_stop() -> None:
        bus = await connect(addr)
        try:
            await call(bus, NAME, *SNAPS, "MountSnapshot", "s", [snap])
            assert mount_options(path) is not None
            await call(bus, NAME, *SNAPS, "UnmountSnapshot", "s", [snap])
            assert mount_options(path) is None
            await call(bus, NAME, *SNAPS, "MountSnapshot", "s", [snap])
            assert rig.daemon.stop() == 0
            assert mount_options(path) is None
        finally:
            bus.disconnect()

    asyncio.run(held_at_stop())


def test_mounts_a_killed_daemon_left_go_at_the_next_start(rig: Rig) -> None:
    """Outside a private mount namespace (tests; no PrivateMounts=) a SIGKILLed daemon
    leaves its browse mount behind: the next start takes it away."""
    snap = scall(rig.address, "CreateSnapshot", "ssa{ss}", "data", "", {})

    async def mount_then_kill() -> Path:
        bus = await connect(rig.address)
        try:
            (path,) = await call(bus, NAME, *SNAPS, "MountSnapshot", "s", [snap])
            rig.daemon.stop(signal.SIGKILL)
            return Path(path)
        finally:
            bus.disconnect()

    path = asyncio.run(mount_then_kill())
    assert mount_options(path) is not None
    rig.daemon.start()
    assert mount_options(path) is None
    assert not path.exists()
