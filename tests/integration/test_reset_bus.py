"""org.ose.Reset1 on the real daemon, polkitd and bus, over a lived-in sandbox root
(--root), and `osectl recovery` with the daemon killed. The truth is what the test
planted (tests/unit/reset/livedin.py), an os.walk of the tree and a sha256 + lstat +
xattr + ACL manifest taken by test code, never the daemon's own report."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Variant

from oseprovd.bus.convert import unwrap
from tests.harness import treemanifest
from tests.harness.busclient import BusError, call, call_daemon, connect, error_of, single
from tests.harness.components import REPO_ROOT
from tests.harness.daemon import DaemonProcess
from tests.harness.users import call_as
from tests.integration.test_osectl import OSECTL, no_traceback
from tests.unit.reset.livedin import LivedIn, all_paths, build, warm_atimes

pytestmark = pytest.mark.root

NAME = "org.ose.Provisioning1"
RESET = ("/org/ose/Provisioning1/Reset", "org.ose.Reset1")
PROPS = "org.freedesktop.DBus.Properties"
INVALID = "org.freedesktop.DBus.Error.InvalidArgs"
DENIED = "org.freedesktop.DBus.Error.AccessDenied"
LIGHT = {"profile": Variant("s", "light")}


@dataclass
class Rig:
    daemon: DaemonProcess
    tree: LivedIn

    @property
    def address(self) -> str:
        return self.daemon.bus_address

    @property
    def root(self) -> Path:
        return self.daemon.root


@pytest.fixture
def rig(ose_daemon) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    # No snapshots.d: the daemon's default for a sandbox root is the copy store under
    # its state dir, covering the whole root (what Execute's rollback point uses).
    d = ose_daemon.start(start=False, extra_args=["--snapshot-timer", "0"])
    tree = build(d.root)
    d.start()
    yield Rig(d, tree)


def rcall(address: str, member: str, sig: str = "", *body: Any) -> Any:
    return single(call_daemon(address, *RESET, member, sig, *body))



def wait_job(address: str, path: str, timeout: float = 90) -> tuple[str, dict[str, Any], Any]:
    async def go() -> tuple[str, dict[str, Any], Any]:
        bus = await connect(address)
        try:
            deadline = time.monotonic() + timeout
            while True:
                (props,) = await call(bus, NAME, path, PROPS, "GetAll", "s", ["org.ose.Job1"])
                props = unwrap(props)
                if props["State"] not in ("queued", "running"):
                    return props["State"], props["Result"], props["Error"]
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            bus.disconnect()
    return asyncio.run(go())


def run_job(address: str, path: str) -> dict[str, Any]:
    state, result, error = wait_job(address, path)
    assert state == "succeeded", error
    return result


def manifest(root: Path) -> dict[str, Any]:
    """Taken after warming atimes, so reads by the daemon don't show as changes."""
    warm_atimes(root)
    return treemanifest.manifest(root, exclude=(b"var/lib/ose",))


def client(address: str) -> Any:
    """A picklable caller for call_as: ("ok", plain result) or (error name, None)."""
    def as_client(member: str, sig: str, *body: Any) -> Any:
        try:
            return ("ok", unwrap(rcall(address, member, sig, *body)))
        except BusError as e:
            return (e.name, None)
    return as_client


def pages(address: str, plan: str, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = unwrap(rcall(address, "GetPlanItems", "stu", plan, len(out), limit))
        out += page
        if len(page) < limit:
            return out


def test_preview_execute_rollback_as_admin_and_who_may(rig: Rig, test_users) -> None:  # type: ignore[no-untyped-def]
    addr, root, planted = rig.address, rig.root, rig.tree.light_removes
    as_client = client(addr)
    admin, user = test_users.admin, test_users.user

    # Nothing that names files is public.
    for member, sig, body in (("Preview", "a{sv}", [LIGHT]), ("Analyze", "a{sv}", [LIGHT])):
        assert call_as(user, as_client, member, sig, *body)[0] == DENIED, member
    assert call_as(user, as_client, "ListProfiles", "")[0] == "ok"
    assert call_as(user, as_client, "GetBaseline", "")[1]["source"] == "distribution"
    # An unknown selection key is refused before anything.
    assert call_as(admin, as_client, "Preview", "a{sv}", {"prfile": Variant("s", "x")})[0] \
        == INVALID

    outcome, path = call_as(admin, as_client, "Preview", "a{sv}", LIGHT)
    assert outcome == "ok"
    plan = run_job(addr, path)
    assert plan["item_count"] == len(planted)
    assert plan["action"] == "org.ose.reset.clean"  # light: safe caches, logs, temp
    # Pages of 7 are the planted candidates, each one there now as the item says.
    items = pages(addr, plan["id"], 7)
    assert {i["path"] for i in items} == planted
    assert [i["path_bytes"] for i in items] == sorted(os.fsencode(p) for p in planted)
    walked = all_paths(root)
    for i in items:
        st = os.lstat(root / i["path"])
        assert i["path"] in walked and (st.st_ino, st.st_uid) == (i["ino"], i["uid"])
    assert call_as(user, as_client, "GetPlanItems", "stu", plan["id"], 0, 10)[0] == DENIED
    assert call_as(user, as_client, "GetPlan", "s", plan["id"])[0] == DENIED

    before_paths = all_paths(root)
    before = manifest(root)
    # Refused: an unprivileged user, a wrong digest, an unknown option.
    assert call_as(user, as_client, "Execute", "ssa{sv}", plan["id"], plan["digest"],
                   {})[0] == DENIED
    assert error_of(rcall, addr, "Execute", "ssa{sv}", plan["id"], "0" * 64, {}) == \
        "org.ose.Error.PlanDigestMismatch"
    assert error_of(rcall, addr, "Execute", "ssa{sv}", plan["id"], "zz", {}) == INVALID
    assert error_of(rcall, addr, "Execute", "ssa{sv}", plan["id"], plan["digest"],
                    {"force": Variant("b", True)}) == INVALID
    # A dry run checks everything and changes nothing.
    dry = run_job(addr, rcall(addr, "Execute", "ssa{sv}", plan["id"], plan["digest"],
                              {"dry_run": Variant("b", True)}))
    assert dry["dry_run"] and dry["removed"] == len(planted)
    assert treemanifest.differences(before, manifest(root)) == []

    outcome, path = call_as(admin, as_client, "Execute", "ssa{sv}", plan["id"],
                            plan["digest"], {})
    assert outcome == "ok"
    result = run_job(addr, path)
    assert result["removed"] == len(planted) and result["skipped_count"] == 0
    assert "skipped" not in result  # a job's result is readable by all: counts only
    assert all_paths(root) == before_paths - planted
    # Nothing else changed: what is left is as it was, but for the times of the
    # directories something was removed from.
    after = treemanifest.manifest(root, exclude=(b"var/lib/ose",))
    parents = {os.fsencode(os.path.dirname(p) or ".") for p in planted}
    for p, entry in after["entries"].items():
        if p not in parents:
            assert entry == before["entries"][p], p

    executions = call_as(user, as_client, "ListExecutions", "")[1]
    (ex,) = [e for e in executions if e["id"] == result["execution"]]
    assert ex["state"] == "done" and ex["snapshot"] == result["rollback_point"]

    assert call_as(user, as_client, "Rollback", "s", result["execution"])[0] == DENIED
    outcome, path = call_as(admin, as_client, "Rollback", "s", result["execution"])
    assert outcome == "ok"
    rb = run_job(addr, path)
    assert rb["snapshot"] == result["rollback_point"]
    assert treemanifest.differences(before, manifest(root)) == []
    got = unwrap(rcall(addr, "GetExecution", "s", result["execution"]))
    assert got["state"] == "rolled_back"
    state, _, error = wait_job(addr, rcall(addr, "Rollback", "s", result["execution"]))
    assert state == "failed" and error[0] == "NotApplicable"


def test_an_item_changed_after_preview_is_skipped_with_a_report(rig: Rig, test_users) -> None:  # type: ignore[no-untyped-def]
    addr, root = rig.address, rig.root
    plan = run_job(addr, rcall(addr, "Preview", "a{sv}", {
        "profile": Variant("s", "light"), "include_paths": Variant("as", ["var/tmp"])}))
    expected = {p for p in rig.tree.light_removes if p.startswith("var/tmp/")}
    assert {i["path"] for i in pages(addr, plan["id"], 100)} == expected
    changed = root / "var/tmp/build.o"
    changed.write_bytes(b"written after the preview\n")
    result = run_job(addr, rcall(addr, "Execute", "ssa{sv}", plan["id"], plan["digest"], {}))
    assert result["skipped_count"] == 1
    assert changed.read_bytes() == b"written after the preview\n"
    assert not any(os.path.lexists(root / p) for p in expected - {"var/tmp/build.o"})
    # Root (holding the preview action) sees which path and why; a user sees counts.
    rec = unwrap(rcall(addr, "GetExecution", "s", result["execution"]))
    (skipped,) = rec["result"]["skipped"]
    assert skipped["path"] == "var/tmp/build.o" and skipped["reason"]
    public = call_as(test_users.user, client(addr), "GetExecution", "s", result["execution"])
    assert public[0] == "ok" and "skipped" not in public[1]["result"]
    assert public[1]["result"]["skipped_count"] == 1


ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # this checkout's osectl


def osectl(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([OSECTL, "--address", address, "--no-ask-password", *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL, env=ENV)
    no_traceback(proc)
    return proc


def last_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = [json.loads(line) for line in proc.stdout.splitlines()]  # all of it is JSON
    return lines[-1]


def test_osectl_reset_json(rig: Rig) -> None:
    addr, root = rig.address, rig.root
    async def features() -> Any:
        bus = await connect(addr)
        try:
            (v,) = await call(bus, NAME, "/org/ose/Provisioning1", PROPS, "Get", "ss",
                              ["org.ose.Manager1", "Features"])
            return v.value
        finally:
            bus.disconnect()
    assert "org.ose.Reset1" in asyncio.run(features())
    profiles = last_json(osectl(addr, "--json", "reset", "profiles"))
    assert {"light", "medium", "deep", "nuclear"} <= {p["name"] for p in profiles}
    assert last_json(osectl(addr, "--json", "reset", "baseline"))["source"] == "distribution"
    analysis = last_json(osectl(addr, "--json", "reset", "analyze", "--class", "log"))
    logs = {p for p in rig.tree.light_removes if p.startswith("var/log/")}
    assert analysis["totals"]["count"] == len(logs)
    plan = last_json(osectl(addr, "--json", "reset", "preview", "--class", "log"))
    items = last_json(osectl(addr, "--json", "reset", "items", plan["id"], "--limit", "1000"))
    assert {i["path"] for i in items} == logs
    # Without a terminal and without --yes nothing is done.
    refused = osectl(addr, "--json", "reset", "execute", plan["id"])
    assert refused.returncode == 2 and all(os.path.lexists(root / p) for p in logs)
    human = osectl(addr, "reset", "preview", "--class", "log")
    assert human.returncode == 0 and "By class" in human.stdout
    done = last_json(osectl(addr, "--json", "reset", "execute", plan["id"], "--yes"))
    assert done["removed"] == len(logs) and not any(os.path.lexists(root / p) for p in logs)
    listed = last_json(osectl(addr, "--json", "reset", "executions"))
    assert [e["state"] for e in listed if e["id"] == done["execution"]] == ["done"]
    back = last_json(osectl(addr, "--json", "reset", "rollback", done["execution"], "--yes"))
    assert back["execution"] == done["execution"]
    assert all(os.path.lexists(root / p) for p in logs)
    captured = last_json(osectl(addr, "--json", "reset", "baseline", "--capture"))
    users = [line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines()]
    assert captured["source"] == "captured" and captured["users"] == len(users)
    assert last_json(osectl(addr, "--json", "reset", "baseline"))["source"] == "captured"


def recovery(rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [OSECTL, "--json", "recovery", "--state-dir", str(rig.daemon.state_dir),
         "--root", str(rig.root), *args],
        capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
        env={**ENV, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"})
    no_traceback(proc)
    return proc


BIG = 12000


def test_recovery_rolls_back_an_execution_killed_mid_way_without_the_daemon(rig: Rig) -> None:
    addr, root = rig.address, rig.root
    big = plant_big(root)
    before = manifest(root)
    kill_during_removals(rig, big)

    # While a daemon runs on the state dir, recovery refuses (checked with a live one
    # below); now none does.
    listed = json.loads(recovery(rig, "list").stdout)
    (ex,) = listed["executions"]
    assert ex["state"] == "interrupted" and listed["interrupted"] == [ex["id"]]
    assert ex["snapshot"] in {p["id"] for p in listed["rollback_points"]}
    back = recovery(rig, "rollback", ex["id"], "--yes")
    assert back.returncode == 0, back.stderr
    assert treemanifest.differences(before, manifest(root)) == []

    rig.daemon.start()
    got = unwrap(rcall(addr, "GetExecution", "s", ex["id"]))
    assert got["state"] == "rolled_back"
    busy = recovery(rig, "list")
    assert busy.returncode == 2 and "is running" in busy.stdout


def plant_big(root: Path, n: int = BIG) -> Path:
    big = root / "home/alice/.cache/big"
    big.mkdir()
    for i in range(n):
        (big / f"f{i:05d}").write_bytes(b"x")
    os.chown(big, 1000, 1000)
    return big


def kill_during_removals(rig: Rig, big: Path) -> dict[str, Any]:
    """Preview the big tree, Execute, kill -9 the daemon once removals started."""
    addr = rig.address
    plan = run_job(addr, rcall(addr, "Preview", "a{sv}", {
        "profile": Variant("s", "light"),
        "include_paths": Variant("as", ["home/alice/.cache/big"])}))
    n = len(os.listdir(big))
    assert plan["item_count"] == n + 1
    rcall(addr, "Execute", "ssa{sv}", plan["id"], plan["digest"], {})
    deadline = time.monotonic() + 60
    while len(os.listdir(big)) == n:
        assert time.monotonic() < deadline, "removals never started"
        time.sleep(0.005)
    rig.daemon.kill()
    assert big.exists() and os.listdir(big), "finished before the kill; plant more files"
    return plan


def test_resume_through_the_daemon_after_a_kill(rig: Rig) -> None:
    addr, root = rig.address, rig.root
    big = plant_big(root)
    before = manifest(root)
    kill_during_removals(rig, big)
    rig.daemon.start()
    (ex,) = unwrap(rcall(addr, "ListExecutions"))
    assert ex["state"] == "interrupted"
    assert f"execution {ex['id']}" in rig.daemon.log_text() and "interrupted" in \
        rig.daemon.log_text()
    done = run_job(addr, rcall(addr, "Resume", "s", ex["id"]))
    assert done["execution"] == ex["id"] and done["skipped_count"] == 0
    assert not big.exists()  # the rest removed, the directory item last
    assert unwrap(rcall(addr, "GetExecution", "s", ex["id"]))["state"] == "done"
    run_job(addr, rcall(addr, "Rollback", "s", ex["id"]))
    assert treemanifest.differences(before, manifest(root)) == []


def test_recovery_resumes_from_the_killed_jobs_steps_then_the_daemon_rolls_back(
        rig: Rig) -> None:
    addr, root = rig.address, rig.root
    big = plant_big(root)
    before = manifest(root)
    kill_during_removals(rig, big)
    (ex,) = json.loads(recovery(rig, "list").stdout)["executions"]
    done = recovery(rig, "resume", ex["id"], "--yes")
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads(done.stdout)
    assert result["execution"] == ex["id"] and result["skipped_count"] == 0
    assert not big.exists()
    assert [e["state"] for e in json.loads(recovery(rig, "list").stdout)["executions"]] \
        == ["done"]
    rig.daemon.start()
    run_job(addr, rcall(addr, "Rollback", "s", ex["id"]))
    assert treemanifest.differences(before, manifest(root)) == []


def test_a_name_that_is_not_utf8_travels_as_bytes_and_comes_back(rig: Rig) -> None:
    addr, root = rig.address, rig.root
    odd = b"var/tmp/caf\xe9 \x01.bin"
    with open(os.fsencode(root) + b"/" + odd, "wb") as f:
        f.write(b"odd bytes")
    before = manifest(root)
    plan = run_job(addr, rcall(addr, "Preview", "a{sv}", {
        "profile": Variant("s", "light"), "include_paths": Variant("as", ["var/tmp"])}))
    items = pages(addr, plan["id"], 100)
    (item,) = [i for i in items if i["path_bytes"] == odd]
    assert item["path"] == "var/tmp/caf\\xe9 \x01.bin"  # text for people, bytes exact
    result = run_job(addr, rcall(addr, "Execute", "ssa{sv}", plan["id"], plan["digest"], {}))
    assert result["skipped_count"] == 0
    assert not os.path.lexists(os.fsencode(root) + b"/" + odd)
    run_job(addr, rcall(addr, "Rollback", "s", result["execution"]))
    assert treemanifest.differences(before, manifest(root)) == []


def test_cancel_stops_between_batches_and_leaves_it_interrupted(rig: Rig) -> None:
    addr, root = rig.address, rig.root
    big = plant_big(root)
    plan = run_job(addr, rcall(addr, "Preview", "a{sv}", {
        "profile": Variant("s", "light"),
        "include_paths": Variant("as", ["home/alice/.cache/big"])}))
    job = rcall(addr, "Execute", "ssa{sv}", plan["id"], plan["digest"], {})
    deadline = time.monotonic() + 60
    while len(os.listdir(big)) == BIG:
        assert time.monotonic() < deadline, "removals never started"
        time.sleep(0.005)

    async def cancel() -> None:
        bus = await connect(addr)
        try:
            await call(bus, NAME, job, "org.ose.Job1", "Cancel", "", [])
        finally:
            bus.disconnect()
    asyncio.run(cancel())
    state, _, _ = wait_job(addr, job)
    left = len(os.listdir(big))
    assert state == "cancelled" and 0 < left < BIG
    (ex,) = unwrap(rcall(addr, "ListExecutions"))
    assert ex["state"] == "interrupted"
    time.sleep(0.2)
    assert len(os.listdir(big)) == left  # it really stopped
    done = run_job(addr, rcall(addr, "Resume", "s", ex["id"]))
    assert done["skipped_count"] == 0 and not big.exists()


ROOT_CONFIG = """\
backend = "copy"
path = "/"
snapshot_dir = "/srv/ose-rollback"
"""


def test_a_rollback_store_inside_the_root_is_never_an_item(ose_daemon) -> None:  # type: ignore[no-untyped-def]
    """A snapshots.d config (as an admin writes it) puts the copy store inside the
    target root: a plan never names it, even when asked to empty the tree holding it,
    and Execute + Rollback work through it."""
    d = ose_daemon.start(start=False, extra_args=["--snapshot-timer", "0"])
    tree = build(d.root)
    etc = d.root / "etc/ose/snapshots.d"
    etc.mkdir(parents=True)
    (etc / "root.toml").write_text(ROOT_CONFIG)
    (d.root / "srv/ose-rollback").mkdir(parents=True, mode=0o700)
    (d.root / "srv/ose-rollback/planted").write_bytes(b"inside the store\n")
    (d.root / "srv/www").mkdir()
    (d.root / "srv/www/index.html").write_bytes(b"<p>site</p>\n")
    d.start()
    addr = d.bus_address
    wide = run_job(addr, rcall(addr, "Preview", "a{sv}", {
        "profile": Variant("s", "light"), "add_paths": Variant("as", ["srv"])}))
    paths = {i["path"] for i in pages(addr, wide["id"], 5000)}
    # A tree holding the rollback store is not taken at all (the engine refuses an
    # anchor with a refused path inside); the light items still are.
    assert not any(p.startswith("srv") for p in paths)
    assert tree.light_removes <= paths
    store = b"srv/ose-rollback"
    warm_atimes(d.root)
    before = treemanifest.manifest(d.root, exclude=(b"var/lib/ose", store))
    plan = run_job(addr, rcall(addr, "Preview", "a{sv}", LIGHT))
    result = run_job(addr, rcall(addr, "Execute", "ssa{sv}", plan["id"], plan["digest"], {}))
    assert result["removed"] == len(tree.light_removes)
    assert any(p.name == result["rollback_point"]
               for p in (d.root / "srv/ose-rollback").iterdir())
    run_job(addr, rcall(addr, "Rollback", "s", result["execution"]))
    warm_atimes(d.root)
    after = treemanifest.manifest(d.root, exclude=(b"var/lib/ose", store))
    assert treemanifest.differences(before, after) == []


def test_rollback_to_baseline_needs_the_system_action_and_a_btrfs_snapshot(  # type: ignore[no-untyped-def]
        rig: Rig, test_users) -> None:
    """The rig's root has the copy store (not btrfs): CaptureBaseline takes no
    snapshot, Analyze offers none, RollbackToBaseline is refused to a user and fails
    NotApplicable for the admin, changing nothing (manifest)."""
    addr, root = rig.address, rig.root
    as_client = client(addr)
    admin, user = test_users.admin, test_users.user
    assert call_as(admin, as_client, "CaptureBaseline", "")[1]["snapshot"] == ""
    before = manifest(root)
    assert call_as(user, as_client, "RollbackToBaseline", "")[0] == DENIED
    outcome, path = call_as(admin, as_client, "RollbackToBaseline", "")
    assert outcome == "ok"
    state, _, error = wait_job(addr, path)
    assert state == "failed" and error[0] == "NotApplicable"
    outcome, path = call_as(admin, as_client, "Analyze", "a{sv}", LIGHT)
    assert run_job(addr, path).get("baseline_rollback") in (None, "")
    # osectl: without a terminal and --yes nothing is asked; with --yes the job fails
    assert osectl(addr, "--json", "reset", "rollback-baseline").returncode == 2
    failed = osectl(addr, "--json", "reset", "rollback-baseline", "--yes")
    assert failed.returncode != 0 and "NotApplicable" in failed.stdout + failed.stderr
    assert treemanifest.differences(before, manifest(root)) == []
