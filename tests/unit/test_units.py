"""The systemd units: systemd-analyze accepts them, their exposure stays within the
recorded thresholds, and the sandbox they describe lets the daemon's Python run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.osint_tools import REPO, copy_sources, make, require_tool, system_bus

THRESHOLDS = REPO / "systemd" / "security-threshold"
UNIT = REPO / "systemd" / "oseprovd.service"


def thresholds() -> dict[str, float]:
    rows = [line.split() for line in THRESHOLDS.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return {unit: float(value) for unit, value in rows}


def exposure(unit: Path) -> float:
    out = subprocess.run(
        [require_tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60, check=True).stdout
    found = re.search(rf"Overall exposure level for {re.escape(unit.name)}: (\d+\.\d)", out)
    assert found, out
    return float(found.group(1))


def test_make_check_units_passes(tmp_path: Path) -> None:
    require_tool("systemd-analyze")
    require_tool("man")
    result = make("check-units", build=tmp_path, umask=0o022)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "systemd-analyze verify: oseprovd-tuning.service oseprovd.service OK" in result.stdout


@pytest.mark.parametrize(("change", "message"), [
    (("[Service]\n", "[Service]\nProtectSytem=strict\n"), "Unknown key"),
    (("Documentation=man:oseprovd(8)", "Documentation=man:oseprovd-nope(8)"), "man"),
    (("ExecStart=/usr/bin/oseprovd", "ExecStart=/usr/bin/oseprovd-nope"), "not executable"),
    (("Requires=dbus.socket", "Requires=dbus-nope.socket"), "dbus-nope.socket"),
])
def test_check_units_catches_a_broken_unit(tmp_path: Path, change: tuple[str, str],
                                           message: str) -> None:
    require_tool("systemd-analyze")
    repo = copy_sources(tmp_path / "src")
    unit = repo / "systemd/oseprovd.service"
    text = unit.read_text()
    assert change[0] in text
    unit.write_text(text.replace(change[0], change[1], 1))
    result = make("check-units", repo=repo, build=tmp_path / "build", umask=0o022)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_check_units_fails_above_the_threshold(tmp_path: Path) -> None:
    require_tool("systemd-analyze")
    repo = copy_sources(tmp_path / "src")
    path = repo / "systemd/security-threshold"
    path.write_text(re.sub(r"(?m)^(oseprovd\.service\s+)\S+$", r"\g<1>1.0", path.read_text()))
    result = make("check-units", repo=repo, build=tmp_path / "build", umask=0o022)
    assert result.returncode != 0
    assert "oseprovd.service: exposure above its threshold 1.0" in result.stderr


def test_every_unit_has_a_threshold_and_stays_within_it() -> None:
    limits = thresholds()
    units = sorted((REPO / "systemd").glob("*.service"))
    assert sorted(limits) == [u.name for u in units]
    for unit in units:
        score = exposure(unit)
        assert score <= limits[unit.name], f"{unit.name}: {score} > {limits[unit.name]}"


def test_docs_record_the_score_and_the_threshold() -> None:
    docs = (REPO / "docs" / "os-integration.md").read_text()
    score = exposure(UNIT)
    assert f"exposure **{score}**" in docs
    assert f"threshold **{thresholds()['oseprovd.service']}**" in docs


def test_tmpfiles_creates_the_directories(tmp_path: Path) -> None:
    tmpfiles = require_tool("systemd-tmpfiles")
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles chowns to root")
    subprocess.run([tmpfiles, "--create", f"--root={tmp_path}",
                    str(REPO / "systemd/tmpfiles.d/oseprovd.conf")],
                   check=True, capture_output=True, timeout=60)
    for rel, mode in [("var/lib/oseprovd", 0o700), ("run/oseprovd", 0o700), ("etc/ose", 0o755)]:
        st = (tmp_path / rel).lstat()
        assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == (oct(mode), 0, 0), rel


def unit_settings(name: str) -> list[str]:
    return re.findall(rf"(?m)^{name}=(.*)$", UNIT.read_text())


def syscall_groups() -> dict[str, set[str]]:
    """systemd's own definition of its syscall groups (as this systemd knows them)."""
    out = subprocess.run([require_tool("systemd-analyze"), "syscall-filter", "--no-pager"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    groups: dict[str, set[str]] = {}
    current = ""
    for line in out.splitlines():
        word = line.strip()
        if line.startswith("@"):  # a group header; its members are indented
            current = word
            groups[current] = set()
        elif line.startswith((" ", "\t")) and word and not word.startswith("#") and current:
            groups[current].add(word)
    return groups


def expand(entry: str, groups: dict[str, set[str]]) -> set[str]:
    if not entry.startswith("@"):
        return {entry}
    names: set[str] = set()
    for item in groups[entry]:
        names |= expand(item, groups)
    return names


def allowed_syscalls() -> set[str]:
    """The unit's SystemCallFilter= lines applied in order, as systemd does."""
    groups = syscall_groups()
    allowed: set[str] = set()
    for line in unit_settings("SystemCallFilter"):
        deny = line.startswith("~")
        names: set[str] = set()
        for entry in line.lstrip("~").split():
            names |= expand(entry, groups)
        allowed = allowed - names if deny else allowed | names
    return allowed


# What the daemon does at run time, in miniature: import every module, SQLite in WAL
# mode, sd_notify, the bus, a netlink socket, a child process, an asyncio loop.
WORKLOAD = r"""
import asyncio, importlib, os, pkgutil, socket, sqlite3, subprocess, sys, tempfile
import oseprovd
for info in pkgutil.walk_packages(oseprovd.__path__, "oseprovd."):
    importlib.import_module(info.name)
import click, pydantic, rich.console
from dbus_fast.aio import MessageBus

with tempfile.TemporaryDirectory() as d:
    db = sqlite3.connect(os.path.join(d, "state.db"))
    db.execute("pragma journal_mode=wal")
    db.execute("create table t (x)")
    db.execute("insert into t values (1)")
    db.commit()
    db.close()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(os.path.join(d, "notify"))
    os.environ["NOTIFY_SOCKET"] = os.path.join(d, "notify")
    try:
        from systemd import daemon
        daemon.notify("READY=1")
    except ImportError:
        pass
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    nl.bind((0, 0))
    nl.close()
    subprocess.run(["/bin/true"], check=True)

async def bus():
    conn = await MessageBus(bus_address=sys.argv[1]).connect()
    await conn.request_name("org.ose.Provisioning1")
    await asyncio.sleep(0.05)
    conn.disconnect()

asyncio.run(bus())
"""


def test_the_syscall_filter_allows_what_the_daemon_uses(tmp_path: Path) -> None:
    """Trace the workload with strace and hold every syscall it makes against the unit's
    filter, expanded with systemd's own group definitions."""
    strace = require_tool("strace")
    allowed = allowed_syscalls()
    assert {"openat", "read", "sendmsg", "fsync", "clone3", "execve"} <= allowed
    trace = tmp_path / "trace"
    own = '<policy user="root"><allow own="org.ose.Provisioning1"/></policy>'
    with system_bus(policy_dir=None, extra=own) as address:
        run = subprocess.run([strace, "-f", "-qq", "-o", str(trace), sys.executable, "-c",
                              WORKLOAD, address], cwd=REPO, capture_output=True, text=True,
                             timeout=120, check=False)
    if "ptrace" in run.stderr and run.returncode != 0:
        pytest.skip(f"strace cannot trace here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    used = set(re.findall(r"(?m)^\d+\s+(\w+)\(", trace.read_text()))
    assert len(used) > 30
    assert used - allowed == set()


MDWE_WORKLOAD = r"""
import ctypes, importlib, mmap, pkgutil, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("W+X mapping allowed: MDWE is not in force")
except OSError:
    pass
import oseprovd
for info in pkgutil.walk_packages(oseprovd.__path__, "oseprovd."):
    importlib.import_module(info.name)
import asyncio, sqlite3, click, pydantic, rich.console, dbus_fast.aio

class Model(pydantic.BaseModel):
    x: int

assert Model.model_validate({"x": "3"}).x == 3
db = sqlite3.connect(":memory:")
assert db.execute("select 1").fetchone() == (1,)
callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda v: v + 1)
assert callback(41) == 42
asyncio.run(asyncio.sleep(0))
"""


def test_python_runs_under_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes: the kernel's own W^X switch (PR_SET_MDWE, Linux 6.3)
    refuses the same mappings as systemd's filter; the daemon's code must not need them."""
    assert unit_settings("MemoryDenyWriteExecute") == ["yes"]
    run = subprocess.run([sys.executable, "-c", MDWE_WORKLOAD], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False)
    if run.returncode == 77:
        pytest.skip(f"kernel without PR_SET_MDWE ({os.uname().release})")
    assert run.returncode == 0, run.stderr
