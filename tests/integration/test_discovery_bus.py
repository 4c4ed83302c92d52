"""org.ose.Discovery1 on the real daemon, polkitd and bus. The truth is the kernel
(/proc, /sys), dpkg-query, the sandbox files the test writes and the loop device it
creates; never the daemon's own output."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant

from oseprovd.bus.convert import unwrap
from tests.harness.busclient import BusError, call, call_daemon, connect
from tests.harness.components import REPO_ROOT
from tests.harness.users import call_as
from tests.unit.discovery.helpers import dmi_tree, require_tool, run_tool, steady, write

pytestmark = pytest.mark.root

NAME = "org.ose.Provisioning1"
DISCOVERY = ("/org/ose/Provisioning1/Discovery", "org.ose.Discovery1")
PROPS = "org.freedesktop.DBus.Properties"
INVALID = "org.freedesktop.DBus.Error.InvalidArgs"
DENIED = "org.freedesktop.DBus.Error.AccessDenied"
LOOP_CTL_REMOVE = 0x4C81

SERIALS = {"product_serial": "SN-OSE-4711", "board_serial": "BRD-0815",
           "chassis_serial": "CH-1234", "product_uuid": "4c4c4544-0042-3510-8052-b4c04f4e3132"}
DMI = {"sys_vendor": "Dell Inc.", "product_name": "PowerEdge R650", "board_vendor": "Dell Inc.",
       "board_name": "0Y2K8N", "chassis_type": "23", "chassis_vendor": "Dell Inc.",
       "bios_vendor": "Dell Inc.", "bios_version": "1.8.2", **SERIALS}


def dcall(address: str, member: str, sig: str = "", *body: Any) -> Any:
    """Call Discovery1 as the current process; the reply's first value as plain data."""
    out = call_daemon(address, *DISCOVERY, member, sig, *body, timeout=120)
    return unwrap(out[0]) if out else None


def wait_job(address: str, path: str, limit: float = 60) -> tuple[str, dict[str, Any], Any]:
    async def go() -> tuple[str, dict[str, Any], Any]:
        bus = await connect(address)
        try:
            deadline = time.monotonic() + limit
            while True:
                (props,) = await call(bus, NAME, path, PROPS, "GetAll", "s", ["org.ose.Job1"])
                if props["State"].value not in ("queued", "running"):
                    return (props["State"].value, unwrap(props["Result"]),
                            unwrap(props["Error"]))
                assert time.monotonic() < deadline, "the job did not finish"
                await asyncio.sleep(0.05)
        finally:
            bus.disconnect()
    return asyncio.run(go())


def scan(address: str, limit: float = 60, **options: Any) -> dict[str, Any]:
    opts = {k: Variant("as", v) if isinstance(v, list) else
            Variant("b", v) if isinstance(v, bool) else Variant("d", v)
            for k, v in options.items()}
    path = dcall(address, "Scan", "a{sv}", opts)
    state, result, error = wait_job(address, path, limit)
    assert state == "succeeded", (state, error)
    return result


def as_user(user: Any, address: str, member: str, *args: Any) -> Any:
    def go() -> Any:
        try:
            return dcall(address, member, *args)
        except BusError as e:
            return e.name
    return call_as(user, go)


@pytest.fixture
def live(ose_daemon, tmp_path):  # type: ignore[no-untyped-def]
    """The daemon over the running system (target /), answering every Get* fresh (TTL 0)
    so that a reading can be bracketed by two readings of the truth."""
    config = write(tmp_path, "oseprovd.toml", "[discovery]\ncache_ttl_seconds = 0\n")
    return ose_daemon.start(extra_args=["--root", "/", "--config", str(config)])


@pytest.fixture
def sandbox(ose_daemon):  # type: ignore[no-untyped-def]
    """The daemon over a sandbox: a Dell server's DMI table, a target root with units."""
    d = ose_daemon.start(start=False)
    kernel = d.state_dir.parent / "kernel"
    dmi_tree(kernel, DMI)  # kernel/sys/class/dmi/id/*
    sys_root = kernel / "sys"
    write(d.root, "etc/os-release", 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Sandbox"\n')
    write(d.root, "lib/systemd/system/base.service", "[Unit]\nDescription=Base\n")
    d.extra_args += ["--sys-root", str(sys_root), "--test-interface"]
    d.start()
    return d


# --- ground truth on the live system ------------------------------------------------------

def _meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def test_cpu_memory_and_block_devices_match_the_kernel(live):  # type: ignore[no-untyped-def]
    blocks, hw = steady(lambda: sorted(os.listdir("/sys/block")),
                        lambda: dcall(live.bus_address, "GetHardware"))
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    count = sum(int(b) - int(a) + 1 if "-" in part else 1
                for part in online.split(",") for a, _, b in [part.partition("-")])
    assert hw["cpu"]["logical_cpus"] == count
    assert hw["memory"]["total_bytes"] == _meminfo_total()
    assert sorted(d["name"] for d in hw["block"]["devices"]) == blocks
    for dev in hw["block"]["devices"]:
        sectors = int(Path(f"/sys/block/{dev['name']}/size").read_text())
        assert dev["size_bytes"] == sectors * 512, dev["name"]
    assert {o["name"] for o in hw["outcomes"]} == {
        "cpu", "memory", "block", "mounts", "nics", "gpus", "power", "dmi", "virtualization"}


def test_packages_match_dpkg_query(live):  # type: ignore[no-untyped-def]
    require_tool("dpkg-query")

    def truth() -> set[tuple[str, str, str]]:
        out = run_tool("dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\n")
        return {tuple(line.split("\t")) for line in out.splitlines()}  # type: ignore[misc]

    expected, sw = steady(truth, lambda: dcall(live.bus_address, "GetSoftware"))
    ours = {(p["name"], p.get("version", ""), p.get("architecture", ""))
            for p in sw["packages"]["packages"] if p["state"] != "not-installed"}
    assert expected and ours == expected
    assert sw["os"]["kernel"]["release"] == os.uname().release


# --- Describe: several sections as one JSON object -------------------------------------

ALL_BUT_SECURITY = {"cpu", "memory", "block", "mounts", "nics", "gpus", "power", "dmi",
                    "virtualization", "cloud", "os", "packages", "services", "applications",
                    "sockets", "network", "containers", "databases"}


def describe(address: str, **options: Any) -> tuple[str, dict[str, Any]]:
    text = dcall(address, "Describe", "a{sv}",
                 {k: Variant("as", v) for k, v in options.items()})
    assert isinstance(text, str)
    return text, json.loads(text)


def _nulls(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_nulls(v) for v in value.values())
    if isinstance(value, list):
        return any(_nulls(v) for v in value)
    return value is None


def test_describe_is_every_section_in_one_json_object(live):  # type: ignore[no-untyped-def]
    require_tool("dpkg-query")

    def truth() -> set[tuple[str, str, str]]:
        out = run_tool("dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\n")
        return {tuple(line.split("\t")) for line in out.splitlines()}  # type: ignore[misc]

    expected, (text, report) = steady(truth, lambda: describe(live.bus_address))
    assert set(report["collectors"]) == ALL_BUT_SECURITY
    assert {o["name"] for o in report["outcomes"]} == ALL_BUT_SECURITY
    assert {o["name"] for o in report["outcomes"] if o["status"] == "ok"} <= set(report)
    assert "security" not in report
    ours = {(p["name"], p.get("version", ""), p.get("architecture", ""))
            for p in report["packages"]["packages"] if p["state"] != "not-installed"}
    assert expected and ours == expected
    assert report["memory"]["total_bytes"] == _meminfo_total()
    assert report["os"]["kernel"]["release"] == os.uname().release
    # Keys sorted and no nulls: the text is what `osectl --json` prints, as is.
    assert text == json.dumps(report, sort_keys=True) and not _nulls(report)


def test_describe_subsets_sensitive_fields_and_the_audit(sandbox, test_users):  # type: ignore[no-untyped-def]
    addr = sandbox.bus_address
    _, full = describe(addr, subsets=["!all", "dmi"])
    assert full["collectors"] == ["cpu", "memory", "dmi", "virtualization", "os"]
    assert {k: full["dmi"].get(k) for k in SERIALS} == SERIALS  # root sees them
    seen = as_user(test_users.user, addr, "Describe", "a{sv}",
                   {"subsets": Variant("as", ["!all", "dmi"])})
    assert isinstance(seen, str) and not any(v in seen for v in SERIALS.values())
    assert json.loads(seen)["dmi"]["product_name"] == "PowerEdge R650"  # the rest is there
    assert as_user(test_users.admin, addr, "Describe", "a{sv}", {}).count(
        SERIALS["product_serial"]) == 1
    # The security audit is not public here either.
    assert as_user(test_users.user, addr, "Describe", "a{sv}",
                   {"subsets": Variant("as", ["security", "!min"])}) == DENIED
    _, audit = describe(addr, subsets=["security", "!min"])
    assert audit["collectors"] == ["security"] and "findings" in audit["security"]


# --- hot-plug -----------------------------------------------------------------------------

def _free_loop_number() -> int:
    taken = set(os.listdir("/sys/block")) | set(os.listdir("/dev"))
    for n in random.sample(range(180, 250), 70):
        if f"loop{n}" not in taken:
            return n
    raise AssertionError("no free loop number")


def test_hardware_changed_on_a_new_loop_device(ose_daemon, tmp_path):  # type: ignore[no-untyped-def]
    """The live daemon with its default cache TTL (300 s): the block list it answered
    before the device existed must not be answered after the kernel announced it."""
    losetup = require_tool("losetup")
    daemon = ose_daemon.start(extra_args=["--root", "/"])
    image = tmp_path / "disk.img"
    with image.open("wb") as f:
        f.truncate(8 << 20)
    n = _free_loop_number()
    device = f"/dev/loop{n}"
    seen: list[list[str]] = []
    after: set[str] = set()

    before = {d["name"] for d in dcall(daemon.bus_address, "GetHardware")["block"]["devices"]}
    assert f"loop{n}" not in before

    async def watch() -> None:
        bus = await connect(daemon.bus_address)
        got = asyncio.Event()

        def on_message(msg: Message) -> None:
            if msg.message_type == MessageType.SIGNAL and msg.member == "HardwareChanged":
                seen.append(list(msg.body))
                if msg.body[:3] == ["block", "add", f"loop{n}"]:
                    got.set()

        bus.add_message_handler(on_message)
        await call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                   "org.freedesktop.DBus", "AddMatch", "s",
                   [f"type='signal',sender='{NAME}',interface='org.ose.Discovery1',"
                    "member='HardwareChanged'"])
        attach = await asyncio.create_subprocess_exec(
            losetup, "--", device, str(image))  # a new number: the kernel adds the device
        try:
            assert await attach.wait() == 0
            await asyncio.wait_for(got.wait(), 10)
            (hw,) = await call(bus, NAME, *DISCOVERY, "GetHardware", timeout=60)
            after.update(d["name"] for d in unwrap(hw)["block"]["devices"])
        finally:
            bus.disconnect()

    try:
        asyncio.run(watch())
    finally:
        _detach_and_remove(losetup, n)
        Path(device).unlink(missing_ok=True)  # no udevd here to remove the node
    assert ["block", "add", f"loop{n}"] in seen
    assert f"loop{n}" in after  # the cached block list was dropped, not served stale
    assert not Path(f"/sys/block/loop{n}").exists()


def _detach_and_remove(losetup: str, n: int) -> None:
    """Detach /dev/loopN and delete the device the attach created (losetup -d takes no
    "--"; the device path is ours). Detaching completes asynchronously: EBUSY until then."""
    if Path(f"/sys/block/loop{n}/loop").exists():
        done = subprocess.run([losetup, "-d", f"/dev/loop{n}"], capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stderr
    fd = os.open("/dev/loop-control", os.O_RDWR)
    try:
        for _ in range(100):
            try:
                fcntl.ioctl(fd, LOOP_CTL_REMOVE, n)
                return
            except OSError:
                if not Path(f"/sys/block/loop{n}").exists():
                    return
                time.sleep(0.05)
        raise AssertionError(f"loop{n} could not be removed")
    finally:
        os.close(fd)


# --- sensitive fields ---------------------------------------------------------------------

def test_serials_only_for_callers_with_read_sensitive(sandbox, test_users):  # type: ignore[no-untyped-def]
    addr = sandbox.bus_address
    for who in ("root", test_users.admin):
        hw = dcall(addr, "GetHardware") if who == "root" else as_user(who, addr, "GetHardware")
        assert {k: hw["dmi"].get(k) for k in SERIALS} == SERIALS, who
    plain = as_user(test_users.user, addr, "GetHardware")
    assert plain["dmi"]["product_name"] == "PowerEdge R650"  # the rest is there
    assert not set(SERIALS) & set(plain["dmi"]), "serials reached an unprivileged caller"
    text = json.dumps(plain)
    assert not any(v in text for v in SERIALS.values())

    # Stored reports are redacted on the way out in the same way.
    report = scan(addr, subsets=["!all", "dmi"])["report"]
    full = dcall(addr, "GetReport", "s", report)
    assert full["dmi"]["product_serial"] == SERIALS["product_serial"]
    seen = as_user(test_users.user, addr, "GetReport", "s", report)
    assert "product_serial" not in seen["dmi"] and seen["id"] == report
    # The security audit is not public.
    assert as_user(test_users.user, addr, "GetSecurity") == DENIED
    scan_security = as_user(test_users.user, addr, "Scan", "a{sv}",
                            {"subsets": Variant("as", ["security"])})
    assert scan_security == DENIED


# --- reports and diffs --------------------------------------------------------------------

def test_diff_of_two_scans_shows_exactly_the_unit_added(sandbox):  # type: ignore[no-untyped-def]
    addr = sandbox.bus_address
    first = scan(addr, subsets=["services", "!min"])
    assert first["collectors"] == ["services"] and first["failed"] == []
    write(sandbox.root, "etc/systemd/system/ose-added.service",
          "[Unit]\nDescription=Added between the scans\n[Service]\nExecStart=/bin/true\n")
    second = scan(addr, subsets=["services", "!min"])
    diff = dcall(addr, "DiffReports", "ss", first["report"], second["report"])
    assert diff["a"] == first["report"] and diff["b"] == second["report"]
    assert [(c["kind"], c["path"]) for c in diff["changes"]] == [
        ("added", "services.systemd_units[ose-added.service]")]
    listed = [r["id"] for r in dcall(addr, "ListReports")]
    assert listed[:2] == [second["report"], first["report"]]  # newest first
    same = dcall(addr, "DiffReports", "ss", second["report"], second["report"])
    assert same.get("changes", []) == []


def test_a_hanging_collector_does_not_hang_the_scan(sandbox):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = scan(sandbox.bus_address, limit=20, subsets=["test_hang", "services", "!min"],
                  timeout=1.0)
    assert time.monotonic() - started < 10
    assert result["failed"] == ["test_hang"]
    report = dcall(sandbox.bus_address, "GetReport", "s", result["report"])
    outcomes = {o["name"]: o["status"] for o in report["outcomes"]}
    assert outcomes == {"test_hang": "timeout", "services": "ok"}
    units = {u["name"] for u in report["services"]["systemd_units"]}
    assert units == {"base.service"}  # the sandbox root's one unit
    # The daemon still answers at once while that thread stays stuck.
    assert dcall(sandbox.bus_address, "GetCloud")["cloud"]["status"] in ("found", "maybe",
                                                                         "none")


def test_quick_scan_is_the_minimal_set(sandbox):  # type: ignore[no-untyped-def]
    path = dcall(sandbox.bus_address, "ScanQuick")
    state, result, _ = wait_job(sandbox.bus_address, path)
    assert state == "succeeded"
    assert sorted(result["collectors"]) == ["cpu", "dmi", "memory", "os", "virtualization"]


@pytest.mark.parametrize("member,sig,args", [
    ("Scan", "a{sv}", [{"subsets": Variant("as", ["hardware", "nope"])}]),
    ("Scan", "a{sv}", [{"bogus": Variant("b", True)}]),
    ("Scan", "a{sv}", [{"subsets": Variant("s", "all")}]),
    ("Scan", "a{sv}", [{"timeout": Variant("d", -1.0)}]),
    ("Scan", "a{sv}", [{"subsets": Variant("as", [])}]),
    ("GetReport", "s", ["../../etc/passwd"]),
    ("GetReport", "s", [""]),
    ("DiffReports", "ss", ["0123456789abcdef", "x"]),
    ("Profile", "a{sv}", [{"seconds": Variant("d", 0.0)}]),
    ("Describe", "a{sv}", [{"subsets": Variant("as", ["hardware", "nope"])}]),
    ("Describe", "a{sv}", [{"bogus": Variant("b", True)}]),
    ("Describe", "a{sv}", [{"subsets": Variant("s", "all")}]),
    ("Describe", "a{sv}", [{"subsets": Variant("as", [])}]),
])
def test_bad_arguments_are_invalid_args(sandbox, member, sig, args):  # type: ignore[no-untyped-def]
    with pytest.raises(BusError) as e:
        dcall(sandbox.bus_address, member, sig, *args)
    assert e.value.name == INVALID
    assert "Traceback" not in e.value.text


def test_unknown_report_is_not_found(sandbox):  # type: ignore[no-untyped-def]
    with pytest.raises(BusError) as e:
        dcall(sandbox.bus_address, "GetReport", "s", "0123456789abcdef")
    assert e.value.name == "org.ose.Error.NotFound"


def test_performance_profile_job(sandbox):  # type: ignore[no-untyped-def]
    path = dcall(sandbox.bus_address, "Profile", "a{sv}",
                 {"seconds": Variant("d", 0.4), "interval": Variant("d", 0.2)})
    state, result, error = wait_job(sandbox.bus_address, path)
    assert state == "succeeded", error
    assert result["samples"] >= 2
    assert set(result) >= {"cpu", "memory", "disks", "network", "saturated"}


# --- osectl -------------------------------------------------------------------------------

def test_osectl_discover_scan_report(sandbox):  # type: ignore[no-untyped-def]
    # The checkout's osectl (python -m from the repo root), not whichever one is installed.
    osectl = [sys.executable, "-m", "osectl.main", "--address", sandbox.bus_address]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*osectl, *args], capture_output=True, text=True, timeout=120,
                              check=False, cwd=REPO_ROOT)

    def js(*args: str) -> Any:
        done = run("--json", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    hw = js("discover", "hardware")
    assert hw["dmi"]["product_serial"] == SERIALS["product_serial"]  # root sees it
    assert hw["memory"]["total_bytes"] == _meminfo_total()
    everything = js("discover", "all")
    assert {"cpu", "packages", "services", "network", "cloud", "containers",
            "databases"} <= set(everything) and "security" not in everything
    human = run("discover", "hardware")
    assert human.returncode == 0 and "PowerEdge R650" in human.stdout
    whole = run("discover")  # all, in one Describe call, rendered as tables
    assert whole.returncode == 0 and "PowerEdge R650" in whole.stdout
    assert "Operating system" in whole.stdout and "Sandbox" in whole.stdout
    first = js("scan", "--subset", "services", "--subset", "!min")
    write(sandbox.root, "etc/systemd/system/cli-added.service", "[Unit]\nDescription=x\n")
    second = js("scan", "--subset", "services", "--subset", "!min")
    assert [r["id"] for r in js("report", "list")][:2] == [second["report"], first["report"]]
    assert js("report", "show", "latest")["id"] == second["report"]
    diff = js("report", "diff", "latest~1", "latest")
    assert [c["path"] for c in diff["changes"]] == ["services.systemd_units[cli-added.service]"]
    assert "cli-added.service" in run("report", "diff", first["report"], "latest").stdout
    prof = js("profile", "--seconds", "0.3", "--interval", "0.1")
    assert prof["samples"] >= 3 and "saturated" in prof
    assert run("profile", "--seconds", "0.2", "--interval", "0.1").returncode == 0
    md = js("scan", "--subset", "cloud", "--subset", "!min", "--cloud-metadata")
    assert md["cloud_metadata"]["reachable"] is False  # the Dell sandbox: nothing to ask
    bad = run("--json", "scan", "--subset", "nope")
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["error"]["name"] == INVALID
    missing = run("--json", "report", "show", "0123456789abcdef")
    assert missing.returncode == 3


# --- Ansible local facts ------------------------------------------------------------------

def test_ansible_fact_through_the_daemon_and_without_it(sandbox, tmp_path):  # type: ignore[no-untyped-def]
    fact = REPO_ROOT / "integrations/ansible/ose.fact"
    assert os.access(fact, os.X_OK)
    bindir = tmp_path / "bin"
    # An `osectl` on PATH that is this checkout's, as the package installs it.
    write(bindir, "osectl", f"#!/bin/sh\nexec {sys.executable} -m osectl.main \"$@\"\n",
          mode=0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT),
           "OSECTL_BUS_ADDRESS": sandbox.bus_address}

    def facts(**extra: str) -> dict[str, Any]:
        done = subprocess.run([sys.executable, str(fact)], capture_output=True, text=True,
                              timeout=120, check=False, cwd=tmp_path, env={**env, **extra})
        assert done.returncode == 0, done.stdout + done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    daemon = facts()
    assert daemon["source"] == "daemon"
    assert daemon["dmi"]["product_name"] == "PowerEdge R650"  # the daemon's sandbox
    alone = facts(OSECTL_BUS_ADDRESS="unix:path=/nonexistent")
    assert alone["source"] == "local"
    assert alone["memory"]["total_bytes"] == _meminfo_total()
    assert set(daemon) == set(alone)  # the same shape either way


# --- any arguments ------------------------------------------------------------------------

FUZZ_ALLOWED = {INVALID, DENIED, "org.ose.Error.NotFound", "org.ose.Error.RateLimited"}


def test_any_arguments_get_an_answer_or_a_named_error(sandbox):  # type: ignore[no-untyped-def]
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    chars = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
    leaf = st.one_of(
        st.text(chars, max_size=20).map(lambda v: Variant("s", v)),
        st.lists(st.sampled_from(["all", "min", "!min", "hardware", "nope", "!cpu", "",
                                  "security", "test_hang"]), max_size=4).map(
            lambda v: Variant("as", v)),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda v: Variant("d", v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: Variant("x", v)),
        st.booleans().map(lambda v: Variant("b", v)),
    )
    opts = st.dictionaries(st.sampled_from(["subsets", "timeout", "seconds", "interval", "top",
                                            "bogus"]), leaf, max_size=3)
    ids = st.one_of(st.text(chars, max_size=20), st.from_regex(r"\A[0-9a-f]{16}\Z"))
    # Describe waits for what it names: not for the test collector that never returns.
    no_hang = opts.filter(lambda o: "test_hang" not in repr(o.get("subsets")))
    calls = st.one_of(
        opts.map(lambda o: ("Scan", "a{sv}", [o])),
        no_hang.map(lambda o: ("Describe", "a{sv}", [o])),
        opts.map(lambda o: ("Profile", "a{sv}", [{**o, "seconds": Variant("d", 0.1),
                                                  "interval": Variant("d", 0.1)}])),
        ids.map(lambda i: ("GetReport", "s", [i])),
        st.tuples(ids, ids).map(lambda ab: ("DiffReports", "ss", list(ab))),
    )

    async def connect_once() -> Any:
        return await connect(sandbox.bus_address)

    loop = asyncio.new_event_loop()
    bus = loop.run_until_complete(connect_once())

    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(request=calls)
    def one(request: tuple[str, str, list[Any]]) -> None:
        member, sig, body = request
        try:
            loop.run_until_complete(call(bus, NAME, *DISCOVERY, member, sig, body, timeout=60))
        except BusError as e:
            assert e.name in FUZZ_ALLOWED, (request, e.name, e.text)
            assert "Traceback" not in e.text
        assert sandbox.running

    try:
        one()
    finally:
        bus.disconnect()
        loop.close()


def test_cancel_ends_a_scan_stuck_on_a_collector(sandbox):  # type: ignore[no-untyped-def]
    addr = sandbox.bus_address
    before = dcall(addr, "ListReports")
    path = dcall(addr, "Scan", "a{sv}", {"subsets": Variant("as", ["test_hang", "!min"]),
                                         "timeout": Variant("d", 60.0)})

    async def cancel() -> None:
        bus = await connect(addr)
        try:
            await call(bus, NAME, path, "org.ose.Job1", "Cancel")
        finally:
            bus.disconnect()

    started = time.monotonic()
    asyncio.run(cancel())
    state, _, error = wait_job(addr, path, limit=10)
    assert time.monotonic() - started < 10
    assert state == "cancelled", error
    assert dcall(addr, "ListReports") == before  # nothing stored


AWS = {"sys_vendor": "Amazon EC2", "product_name": "m5.large", "bios_vendor": "Amazon EC2",
       "board_vendor": "Amazon EC2", "chassis_vendor": "Amazon EC2",
       "chassis_asset_tag": "Amazon EC2", "board_asset_tag": "i-0123456789abcdef0"}


def test_cloud_metadata_only_when_asked(sandbox):  # type: ignore[no-untyped-def]
    # The Dell sandbox: no cloud evidence, so nothing is sent even when asked.
    asked = scan(sandbox.bus_address, subsets=["cloud", "!min"], cloud_metadata=True)
    assert asked["cloud_metadata"]["reachable"] is False
    assert "nothing was sent" in asked["cloud_metadata"]["error"]
    assert "cloud_metadata" not in scan(sandbox.bus_address, subsets=["cloud", "!min"])
    with pytest.raises(BusError) as e:  # the probe needs the cloud collector's answer
        scan(sandbox.bus_address, subsets=["cpu"], cloud_metadata=True)
    assert e.value.name == INVALID


def test_cloud_metadata_of_an_ec2_guest_is_asked(ose_daemon):  # type: ignore[no-untyped-def]
    """An EC2 guest's DMI table: the AWS service is asked (IMDSv2), with a short timeout."""
    d = ose_daemon.start(start=False)
    dmi_tree(d.state_dir.parent / "kernel", AWS)
    d.extra_args += ["--sys-root", str(d.state_dir.parent / "kernel" / "sys")]
    d.start()
    started = time.monotonic()
    result = scan(d.bus_address, subsets=["cloud", "!min"], cloud_metadata=True)
    assert time.monotonic() - started < 15
    md = result["cloud_metadata"]
    assert md["provider"] == "aws"
    # This machine is no EC2 guest (the DMI table is the sandbox's): unreachable, unless
    # the suite runs on a real EC2 instance, whose service then answers.
    assert (md["reachable"] is False and md["error"]) or md.get("instance_id")
