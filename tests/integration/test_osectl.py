"""osectl as a user types it: a real process against the real daemon and polkitd, as
root, as an admin and as an unprivileged user; JSON purity, exit codes, no tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.users import run_as

pytestmark = pytest.mark.root

OSECTL = str(Path(sys.executable).parent / "osectl")


def osectl(address: str, *args: str, user=None, timeout: float = 60):  # type: ignore[no-untyped-def]
    argv = [OSECTL, "--address", address, "--no-ask-password", *args]
    if user is None:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False)
    return run_as(user, argv, timeout=timeout)


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream and 'File "' not in stream, stream


def test_status_for_root_and_unprivileged_user(ose_daemon, test_users):
    d = ose_daemon.start()
    for user in (None, test_users.user):
        proc = osectl(d.bus_address, "--json", "status", user=user)
        assert proc.returncode == 0, proc.stderr
        status = json.loads(proc.stdout)  # the whole of stdout is one JSON document
        assert status["target_root"] == str(d.root)
        assert status["polkit_reachable"] is True
    human = osectl(d.bus_address, "--no-color", "status")
    assert human.returncode == 0 and str(d.root) in human.stdout
    assert "Jobs running" in human.stdout


def test_audit_only_for_admins(ose_daemon, test_users):
    d = ose_daemon.start()
    assert osectl(d.bus_address, "audit").returncode == 0
    admin = osectl(d.bus_address, "--json", "audit", user=test_users.admin)
    assert admin.returncode == 0, admin.stderr
    rows = json.loads(admin.stdout)
    assert any(r["uid"] == 0 and r["method"].endswith("GetAuditLog") for r in rows)
    denied = osectl(d.bus_address, "--json", "audit", user=test_users.user)
    assert denied.returncode == 4
    err = json.loads(denied.stdout)["error"]
    assert err["name"] == "org.freedesktop.DBus.Error.AccessDenied"
    assert "authentication is required" in err["message"]
    human = osectl(d.bus_address, "audit", user=test_users.user)
    assert human.returncode == 4 and human.stderr.startswith("osectl: ")
    no_traceback(human)


def test_jobs_list_show_watch_cancel(ose_daemon):
    import asyncio

    from dbus_fast import Variant

    from tests.harness.busclient import call, connect

    d = ose_daemon.start(extra_args=["--test-interface"])

    async def demo(seconds: float) -> int:
        bus = await connect(d.bus_address)
        try:
            (path,) = await call(bus, "org.ose.Provisioning1", "/org/ose/Provisioning1/Test",
                                 "org.ose.Test1", "StartDemoJob", "a{sv}",
                                 [{"seconds": Variant("d", seconds),
                                   "steps": Variant("u", 10)}])
            return int(path.rsplit("/", 1)[1])
        finally:
            bus.disconnect()

    job = asyncio.run(demo(1.0))
    watch = osectl(d.bus_address, "--json", "jobs", "watch", str(job))
    assert watch.returncode == 0, watch.stderr
    updates = [json.loads(line) for line in watch.stdout.splitlines()]
    assert updates[-1]["State"] == "succeeded"
    progress = [u["Progress"] for u in updates]
    assert progress == sorted(progress) and len(updates) >= 3  # followed, not just polled

    listed = json.loads(osectl(d.bus_address, "--json", "jobs", "list").stdout)
    assert [j["id"] for j in listed] == [job]
    shown = json.loads(osectl(d.bus_address, "--json", "jobs", "show", str(job)).stdout)
    assert shown["result"] == {"steps": 10} and shown["state"] == "succeeded"

    long_job = asyncio.run(demo(60.0))
    assert osectl(d.bus_address, "jobs", "cancel", str(long_job)).returncode == 0
    watched = osectl(d.bus_address, "jobs", "watch", str(long_job))
    assert watched.returncode == 1 and "cancelled" in watched.stdout

    missing = osectl(d.bus_address, "--json", "jobs", "show", "999")
    assert missing.returncode == 3
    assert json.loads(missing.stdout)["error"]["name"] == "org.ose.Error.NotFound"


def test_daemon_not_reachable_says_how_to_start_it(system_bus, tmp_path):
    gone = osectl(system_bus.address, "status")  # a bus without the daemon
    assert gone.returncode == 5 and "systemctl start oseprovd" in gone.stderr
    no_bus = osectl(f"unix:path={tmp_path}/nothing", "--json", "status")
    assert no_bus.returncode == 5
    assert json.loads(no_bus.stdout)["error"]["exit_code"] == 5
    no_traceback(gone)
    no_traceback(no_bus)


@pytest.mark.parametrize("args,code", [
    (["bogus"], 2), (["jobs", "show", "zero"], 2), (["jobs", "show", "0"], 2),
    (["jobs", "list", "--limit", "100000"], 2), (["--address"], 2),
])
def test_usage_errors(args, code):
    proc = subprocess.run([OSECTL, "--json", *args], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == code
    assert json.loads(proc.stdout)["error"]["exit_code"] == code
    no_traceback(proc)


@pytest.mark.parametrize("shell,marker", [("bash", "complete"), ("zsh", "compdef"),
                                          ("fish", "complete")])
def test_completion_scripts(shell, marker):
    proc = subprocess.run([OSECTL, "completion", shell], capture_output=True, text=True,
                          timeout=30, check=True)
    assert marker in proc.stdout and "_OSECTL_COMPLETE" in proc.stdout
    if shell == "bash":  # it parses
        subprocess.run(["bash", "-n"], input=proc.stdout, text=True, check=True)


def test_finished_job_objects_leave_the_bus_and_the_store_still_answers(  # type: ignore[no-untyped-def]
        ose_daemon, tmp_path):
    """Finished jobs' Job1 objects go after the linger time, and beyond the cap at once;
    the daemon's bus introspection is the truth. Then `jobs watch`/`show` read the
    store."""
    import asyncio

    from dbus_fast import Variant

    from tests.harness.busclient import call, connect

    cfg = tmp_path / "oseprovd.toml"
    cfg.write_text("[limits]\nfinished_job_linger_seconds = 3\nmax_finished_job_objects = 2\n")
    tmp_path.chmod(0o755)
    d = ose_daemon.start(extra_args=["--test-interface", "--config", str(cfg)])

    async def exported_jobs() -> set[int]:
        bus = await connect(d.bus_address)
        try:
            (xml,) = await call(bus, "org.ose.Provisioning1", "/org/ose/Provisioning1/Job",
                                "org.freedesktop.DBus.Introspectable", "Introspect", "", [])
        finally:
            bus.disconnect()
        return {int(n) for n in re.findall(r'<node name="(\d+)"', xml)}

    async def run_jobs(n: int) -> list[int]:
        bus = await connect(d.bus_address)
        try:
            ids = []
            for _ in range(n):
                (path,) = await call(bus, "org.ose.Provisioning1", "/org/ose/Provisioning1/Test",
                                     "org.ose.Test1", "StartDemoJob", "a{sv}",
                                     [{"seconds": Variant("d", 0.05), "steps": Variant("u", 2)}])
                ids.append(int(path.rsplit("/", 1)[1]))
                await asyncio.sleep(0.3)  # done by now
            return ids
        finally:
            bus.disconnect()

    ids = asyncio.run(run_jobs(4))
    assert asyncio.run(exported_jobs()) == set(ids[-2:])  # the cap: the two newest stay
    time.sleep(3.5)
    assert asyncio.run(exported_jobs()) == set()  # the linger is over
    watch = osectl(d.bus_address, "--json", "jobs", "watch", str(ids[0]))
    assert watch.returncode == 0, watch.stderr
    assert json.loads(watch.stdout.splitlines()[-1])["State"] == "succeeded"
    shown = json.loads(osectl(d.bus_address, "--json", "jobs", "show", str(ids[0])).stdout)
    assert shown["state"] == "succeeded" and shown["result"] == {"steps": 2}
    assert osectl(d.bus_address, "jobs", "watch", "999").returncode == 3
