"""org.ose.Tuning1 on the real daemon, polkitd and bus, against a sandbox /proc/sys tree:
the truth is the sandbox files themselves, read by the test."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dbus_fast import Variant

from tests.harness.busclient import BusError, call, call_daemon, connect
from tests.harness.users import call_as
from tests.unit.tuning.sandbox import PROC

pytestmark = pytest.mark.root

NAME = "org.ose.Provisioning1"
TUNING = ("/org/ose/Provisioning1/Tuning", "org.ose.Tuning1")
PROPS = "org.freedesktop.DBus.Properties"


def kernel_tree(base: Path) -> tuple[Path, Path]:
    proc, sys_ = base / "proc", base / "sys"
    for rel, value in PROC.items():
        p = proc / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(value + "\n")
    sys_.mkdir()
    return proc, sys_


@pytest.fixture
def tuned(ose_daemon):  # type: ignore[no-untyped-def]
    d = ose_daemon.start(start=False)
    proc, sys_ = kernel_tree(d.state_dir.parent)
    d.extra_args += ["--proc-root", str(proc), "--sys-root", str(sys_)]
    d.start()
    d.proc_root = proc
    return d


def tcall(address, member, sig="", *body):  # type: ignore[no-untyped-def]
    return call_daemon(address, *TUNING, member, sig, *body)


def prop(address, name):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        bus = await connect(address)
        try:
            (v,) = await call(bus, NAME, TUNING[0], PROPS, "Get", "ss", [TUNING[1], name])
            return v.value
        finally:
            bus.disconnect()
    return asyncio.run(go())


def wait_job(address, path):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        bus = await connect(address)
        try:
            deadline = time.monotonic() + 60
            while True:
                (props,) = await call(bus, NAME, path, PROPS, "GetAll", "s", ["org.ose.Job1"])
                if props["State"].value not in ("queued", "running"):
                    return props["State"].value, props["Result"].value, props["Error"].value
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            bus.disconnect()
    return asyncio.run(go())


def apply(address, profile, **options):  # type: ignore[no-untyped-def]
    opts = {k: Variant("b", v) for k, v in options.items()}
    (path,) = tcall(address, "Apply", "sa{sv}", profile, opts)
    return wait_job(address, path)


def swappiness(d) -> str:  # type: ignore[no-untyped-def]
    return (d.proc_root / "sys/vm/swappiness").read_text().strip()


def test_profiles_and_recommendation(tuned):  # type: ignore[no-untyped-def]
    (profiles,) = tcall(tuned.bus_address, "ListProfiles")
    names = {p["name"].value for p in profiles}
    assert {"balanced", "laptop_battery", "desktop_performance", "server_production",
            "virtual_guest", "aws_guest"} <= names
    assert prop(tuned.bus_address, "Recommended") in names
    (rec,) = tcall(tuned.bus_address, "Recommend")
    assert rec["profile"].value in names and rec["reasons"].value is not None
    (shown,) = tcall(tuned.bus_address, "GetProfile", "s", "server_production")
    plan = {i["knob"].value: i for i in shown["plan"].value["items"].value}
    assert plan["sysctl:vm.swappiness"]["target"].value == "0"
    assert plan["sysctl:vm.swappiness"]["current"].value == "60"  # what the file holds


def test_apply_verify_revert_against_the_files(tuned, test_users):  # type: ignore[no-untyped-def]
    addr = tuned.bus_address
    before = {rel: (tuned.proc_root / rel).read_text().strip() for rel in PROC}

    def apply_as_user():  # type: ignore[no-untyped-def]
        try:
            tcall(addr, "Apply", "sa{sv}", "server_production", {})
            return "ok"
        except BusError as e:
            return e.name
    assert call_as(test_users.user, apply_as_user) == "org.freedesktop.DBus.Error.AccessDenied"
    assert swappiness(tuned) == "60"

    dry = apply(addr, "server_production", dry_run=True)
    assert dry[0] == "succeeded" and swappiness(tuned) == "60"

    state, result, _ = apply(addr, "server_production")
    assert state == "succeeded", result
    assert swappiness(tuned) == "0"
    assert (tuned.proc_root / "sys/fs/file-max").read_text().strip() == "2097152"
    assert prop(addr, "ActiveProfile") == "server_production"

    (verify,) = tcall(addr, "Verify")
    assert verify["drifted"].value == 0
    (tuned.proc_root / "sys/vm/swappiness").write_text("33\n")  # someone else changes it
    (verify,) = tcall(addr, "Verify")
    drifted = [i["knob"].value for i in verify["items"].value
               if i["status"].value == "drifted"]
    assert drifted == ["sysctl:vm.swappiness"]

    (path,) = tcall(addr, "Revert")
    assert wait_job(addr, path)[0] == "succeeded"
    after = {rel: (tuned.proc_root / rel).read_text().strip() for rel in PROC}
    assert after == before  # every original value back (as the kernel would show it)
    assert prop(addr, "ActiveProfile") == ""


@pytest.mark.parametrize("profile,error", [
    ("no_such_profile", "org.ose.Error.NotFound"),
    ("../../etc/passwd", "org.freedesktop.DBus.Error.InvalidArgs"),
    ("-y", "org.freedesktop.DBus.Error.InvalidArgs"),
])
def test_bad_profile_names(tuned, profile, error):  # type: ignore[no-untyped-def]
    with pytest.raises(BusError) as e:
        tcall(tuned.bus_address, "Apply", "sa{sv}", profile, {})
    assert e.value.name == error
    with pytest.raises(BusError) as e:
        tcall(tuned.bus_address, "Apply", "sa{sv}", "balanced", {"bogus": Variant("b", True)})
    assert e.value.name == "org.freedesktop.DBus.Error.InvalidArgs"


def test_hold_ends_when_its_caller_leaves(tuned):  # type: ignore[no-untyped-def]
    addr = tuned.bus_address

    async def hold_then_leave() -> int:
        bus = await connect(addr)
        (cookie,) = await call(bus, NAME, *TUNING, "Hold", "sss",
                               ["desktop_performance", "game", "org.example.Game"])
        assert swappiness(tuned) == "1"  # held profile in effect
        bus.disconnect()  # the caller leaves without releasing
        return int(cookie)

    asyncio.run(hold_then_leave())
    deadline = time.monotonic() + 10
    while swappiness(tuned) != "60":
        assert time.monotonic() < deadline, swappiness(tuned)
        time.sleep(0.05)
    assert prop(addr, "ActiveProfile") == ""


def test_boot_time_apply_without_the_bus(tuned):  # type: ignore[no-untyped-def]
    assert apply(tuned.bus_address, "laptop_battery")[0] == "succeeded"
    assert swappiness(tuned) == "10"
    tuned.stop()
    (tuned.proc_root / "sys/vm/swappiness").write_text("60\n")  # the kernel after a reboot
    proc = subprocess.run(
        [sys.executable, "-m", "oseprovd", "--apply-tuning", "--state-dir",
         str(tuned.state_dir), "--root", str(tuned.root), "--proc-root", str(tuned.proc_root),
         "--sys-root", str(tuned.proc_root.parent / "sys")],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent"})
    assert proc.returncode == 0, proc.stderr
    assert "laptop_battery applied" in proc.stdout
    assert swappiness(tuned) == "10"


def test_osectl_tune(tuned):  # type: ignore[no-untyped-def]
    import json

    osectl = [str(Path(sys.executable).parent / "osectl"), "--address", tuned.bus_address,
              "--json", "tune"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*osectl, *args], capture_output=True, text=True, timeout=60,
                              check=False)

    listed = json.loads(run("list").stdout)
    assert "server_production" in {p["name"] for p in listed}
    applied = run("apply", "server_production")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    result = json.loads(applied.stdout.splitlines()[-1])
    swap = next(o for o in result["outcomes"] if o["knob"] == "sysctl:vm.swappiness")
    assert (swap["before"], swap["after"], swap["status"]) == ("60", "0", "changed")
    assert swappiness(tuned) == "0"
    assert run("verify").returncode == 0
    (tuned.proc_root / "sys/vm/swappiness").write_text("5\n")
    assert run("verify").returncode == 1  # drift is a failure for scripts
    assert run("revert").returncode == 0
    assert swappiness(tuned) == "60"
    missing = run("show", "nope")
    assert missing.returncode == 3
    assert json.loads(missing.stdout)["error"]["name"] == "org.ose.Error.NotFound"


def test_daemon_facts_come_from_discovery_and_sysctl_values_persist(  # type: ignore[no-untyped-def]
        ose_daemon):
    """An EC2-shaped sandbox: the daemon's discovery sees the cloud and Tuning1
    recommends aws_guest (not virtual_guest); applying writes sysctl.d in the root."""
    from tests.unit.discovery.test_cloud_virt_sandbox import CLOUDS

    d = ose_daemon.start(start=False)
    proc, sys_ = kernel_tree(d.state_dir.parent)
    for name, value in CLOUDS["aws"].items():
        (sys_ / "class/dmi/id").mkdir(parents=True, exist_ok=True)
        (sys_ / "class/dmi/id" / name).write_text(value + "\n")
    (proc / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                                  "flags\t\t: fpu sse2 hypervisor\n\n")
    (d.root / "etc/sysctl.d").mkdir(parents=True)
    d.extra_args += ["--proc-root", str(proc), "--sys-root", str(sys_)]
    d.start()
    d.proc_root = proc
    assert prop(d.bus_address, "Recommended") == "aws_guest"
    (rec,) = tcall(d.bus_address, "Recommend")
    assert rec["profile"].value == "aws_guest"
    conf = d.root / "etc/sysctl.d/90-ose-tuning.conf"
    assert apply(d.bus_address, "aws_guest")[0] == "succeeded"
    lines = [ln for ln in conf.read_text().splitlines() if ln and not ln.startswith("#")]
    values = dict(ln.split(" = ", 1) for ln in lines)
    assert values["net.core.somaxconn"] == "4096"
    kernel = {k: " ".join((proc / "sys" / k.replace(".", "/")).read_text().split())
              for k in values}
    assert values == kernel  # the file holds what the kernel was given
    (path,) = tcall(d.bus_address, "Revert")
    assert wait_job(d.bus_address, path)[0] == "succeeded"
    assert not conf.exists()
