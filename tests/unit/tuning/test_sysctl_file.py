"""The sysctl values of the active profile persist in /etc/sysctl.d/90-ose-tuning.conf.

Truth: the file is parsed here with a strict parser written from sysctl.d(5), and read
by the real systemd-sysctl against a sandbox /proc/sys; kernel values are read from the
sandbox files directly. Never the engine's own report.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from oseprovd import errors
from oseprovd.tuning.facts import MachineFacts
from oseprovd.tuning.sysctl import ALLOWED
from oseprovd.tuning.sysctlfile import render

from .conftest import Machine
from .test_crash_recovery import WORKTREE, events_of, run_child
from .test_engine_sandbox import SwappinessRefused

FACTS = MachineFacts()
REL = "etc/sysctl.d/90-ose-tuning.conf"
SYSTEMD_SYSCTL = "/lib/systemd/systemd-sysctl"

# Written out by hand: what each profile must leave in the file on the sandbox machine.
PROFILE_A = """
[memory]
swappiness = 7
[network]
somaxconn = 8192
tcp_rmem = [8192, 65536, 8388608]
tcp_congestion_control = "bbr"
[sysctl]
"fs.file-max" = 4194304
"kernel.sched_min_granularity_ns" = 3000000  # not on the sandbox kernel: left out
"""
EXPECTED_A = {
    "vm.swappiness": "7",
    "net.core.somaxconn": "8192",
    "net.ipv4.tcp_rmem": "8192 65536 8388608",
    "net.ipv4.tcp_congestion_control": "bbr",
    "fs.file-max": "4194304",
}
PROFILE_B = """
[memory]
swappiness = 15
[network]
netdev_max_backlog = 5000
"""
EXPECTED_B = {"vm.swappiness": "15", "net.core.netdev_max_backlog": "5000"}
PROFILE_NO_SYSCTL = '[memory]\ntransparent_hugepages = "never"\n'

LINE_RE = re.compile(r"^(-?)([a-z0-9_.*/-]+)\s*=\s*(\S(?:.*\S)?)$")


def parse_sysctl_d(data: bytes) -> dict[str, str]:
    """sysctl.d(5), strictly: UTF-8, comment lines start with # or ;, every other
    non-empty line is `key = value`; a key set twice or any other line is an error."""
    text = data.decode("utf-8")
    assert text.endswith("\n"), "no final newline"
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = LINE_RE.fullmatch(line)
        assert m, f"line {n} is not 'key = value': {raw!r}"
        assert not m.group(1), f"line {n}: an ignore-failure key is not ours"
        key = m.group(2).replace("/", ".")
        assert key not in out, f"line {n}: {key} set twice"
        out[key] = " ".join(m.group(3).split())
    return out


def header(data: bytes) -> str:
    return "".join(line for line in data.decode().splitlines(keepends=True)
                   if line.startswith("#"))


def profiles(tmp_path: Path) -> Path:
    d = tmp_path / "profiles.d"
    d.mkdir(exist_ok=True)
    (d / "prof_a.toml").write_text(PROFILE_A)
    (d / "prof_b.toml").write_text(PROFILE_B)
    (d / "no_sysctl.toml").write_text(PROFILE_NO_SYSCTL)
    return d


def kernel(m: Machine, keys: list[str] | dict[str, str]) -> dict[str, str]:
    return {k: " ".join(m.proc(k).split()) for k in keys}


def test_apply_writes_exactly_the_applied_sysctls_and_revert_removes_it(tmp_path: Path):
    m = Machine(tmp_path, extra_profiles=profiles(tmp_path))
    pristine = m.snapshot()
    path = m.base / "root" / REL
    m.engine.apply("prof_a", FACTS)
    data = path.read_bytes()
    assert parse_sysctl_d(data) == EXPECTED_A
    assert kernel(m, EXPECTED_A) == EXPECTED_A  # the file says what the kernel has
    assert "managed by oseprovd" in header(data).lower() and "prof_a" in header(data)
    st = path.stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o644, 0, 0)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left
    assert m.engine.verify().drifted == 0
    path.write_text("vm.swappiness = 99\n")  # an edit by hand shows as drift
    assert [i.knob for i in m.engine.verify().items if i.status == "drifted"] == \
        ["sysctl.d:file"]

    m.engine.revert()
    assert not path.exists()
    assert m.snapshot() == pristine


def test_a_shipped_profile_file_agrees_with_the_kernel(machine: Machine):
    pristine = {k: v for k, v in machine.snapshot().items() if k.startswith("proc/sys/")}
    machine.engine.apply("server_production", FACTS)
    values = parse_sysctl_d((machine.base / "root" / REL).read_bytes())
    assert values and set(values) <= set(ALLOWED)
    assert kernel(machine, values) == values
    now = machine.snapshot()
    changed = {k.removeprefix("proc/sys/").replace("/", ".") for k, v in pristine.items()
               if now[k] != v}
    changed -= {"net.ipv4.tcp_available_congestion_control"}  # a side effect, not a setting
    assert changed <= set(values), changed - set(values)


def test_switch_leaves_only_the_new_profiles_keys(tmp_path: Path):
    m = Machine(tmp_path, extra_profiles=profiles(tmp_path))
    pristine = m.snapshot()
    path = m.base / "root" / REL
    m.engine.apply("prof_a", FACTS)
    inode = path.stat().st_ino
    seen = events_of(m, "apply", "prof_b")
    # Replaced in one step: never removed first, so there is no moment without a file.
    assert f"unlink {REL}" not in seen
    assert seen.count(f"file {REL}") == 1
    data = path.read_bytes()
    assert parse_sysctl_d(data) == EXPECTED_B
    assert "prof_b" in header(data) and "prof_a" not in header(data)
    assert path.stat().st_ino != inode  # replaced by a rename, not rewritten in place
    assert m.proc("net.core.somaxconn") == "4096"  # A's key is back to its original
    # A profile without sysctl values: no file.
    m.engine.apply("no_sysctl", FACTS)
    assert not path.exists()
    m.engine.apply("prof_b", FACTS)
    m.engine.revert()
    assert m.snapshot() == pristine


def test_an_admin_file_at_that_path_comes_back_exactly(tmp_path: Path):
    m = Machine(tmp_path, extra_profiles=profiles(tmp_path))
    path = m.base / "root" / REL
    path.write_bytes(b"# the admin's\nvm.swappiness=33\n\xff\n")
    path.chmod(0o600)
    os.chown(path, 1234, 5678)
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    pristine = m.snapshot()
    m.engine.apply("prof_a", FACTS)
    m.engine.apply("prof_b", FACTS)
    assert parse_sysctl_d(path.read_bytes()) == EXPECTED_B
    m.engine.revert()
    assert m.snapshot() == pristine  # bytes, mode, owner and mtime


def test_a_value_the_kernel_refused_is_not_persisted(tmp_path: Path):
    m = Machine(tmp_path, extra_profiles=profiles(tmp_path))
    pristine = m.snapshot()
    roots = m.engine.knobs.roots
    m.engine.knobs.roots = type(roots)(SwappinessRefused(m.base / "proc"), roots.sys,
                                       roots.target)
    result = m.engine.apply("prof_a", FACTS)
    assert not result.complete
    values = parse_sysctl_d((m.base / "root" / REL).read_bytes())
    assert values == {k: v for k, v in EXPECTED_A.items() if k != "vm.swappiness"}
    status = {i.knob: i.status for i in m.engine.verify().items}
    assert status["sysctl.d:file"] == "ok"  # verify checks the file that was written
    assert status["sysctl:vm.swappiness"] == "drifted"  # and still reports the refusal
    # Only refused values: no file at all, and the one from before goes.
    (tmp_path / "profiles.d/swap_only.toml").write_text("[memory]\nswappiness = 9\n")
    (tmp_path / "profiles.d/backlog.toml").write_text("[network]\nnetdev_max_backlog = 5000\n")
    m2 = Machine(tmp_path / "m2", extra_profiles=tmp_path / "profiles.d")
    pristine2 = m2.snapshot()
    m2.engine.apply("backlog", FACTS)
    assert (m2.base / "root" / REL).exists()
    m2.engine.knobs.roots = type(roots)(SwappinessRefused(m2.base / "proc"),
                                        m2.engine.knobs.roots.sys, m2.engine.knobs.roots.target)
    m2.engine.apply("swap_only", FACTS)
    assert not (m2.base / "root" / REL).exists()
    assert m2.proc("net.core.netdev_max_backlog") == "1000"
    m2.engine.revert()
    assert m2.snapshot() == pristine2
    m.engine.revert()
    assert m.snapshot() == pristine


def test_no_sysctl_d_directory_is_not_applicable(tmp_path: Path):
    m = Machine(tmp_path, extra_profiles=profiles(tmp_path))
    shutil.rmtree(m.base / "root/etc/sysctl.d")
    result = m.engine.apply("prof_a", FACTS)
    (o,) = [o for o in result.outcomes if o.knob == "sysctl.d:file"]
    assert o.status == "not-applicable" and "/etc/sysctl.d" in o.detail
    assert result.complete and m.proc("vm.swappiness") == "7"
    assert not (m.base / "root/etc/sysctl.d").exists()


def test_render_never_writes_a_refused_or_unknown_key():
    for key in ("kernel.core_pattern", "net.ipv4.ip_forward", "vm.no_such_key", "../x"):
        with pytest.raises(errors.InvalidArguments):
            render("p", {key: "1"})
    with pytest.raises(errors.InvalidArguments):
        render("p", {"vm.swappiness": "1\nkernel.core_pattern = |/tmp/x"})


def require_systemd_sysctl() -> None:
    missing = [t for t in (SYSTEMD_SYSCTL, shutil.which("unshare"), shutil.which("mount"))
               if t is None or not os.access(t, os.X_OK)]
    if missing or os.geteuid() != 0:
        message = "systemd-sysctl, unshare, mount and root are needed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_systemd_sysctl_alone_reproduces_the_tuning(tmp_path: Path):
    """The point of the file: a machine booting without the daemon gets the values."""
    require_systemd_sysctl()
    tuned = Machine(tmp_path / "tuned", extra_profiles=profiles(tmp_path))
    tuned.engine.apply("prof_a", FACTS)
    conf = tuned.base / "root" / REL
    fresh = Machine(tmp_path / "fresh")  # the same machine after a reboot
    # Plain files keep old bytes past a shorter write (procfs would not): start them
    # empty, which also shows any key written that the file does not name.
    proc_sys = fresh.base / "proc/sys"
    files = [p for p in proc_sys.rglob("*") if p.is_file() and p.name != "osrelease"]
    for p in files:
        p.write_bytes(b"")
    unshare = shutil.which("unshare")
    assert unshare is not None
    child = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "--", sys.executable, "-m",
         "tests.unit.tuning.sysctl_in_ns", str(proc_sys), str(conf),
         SYSTEMD_SYSCTL],
        cwd=WORKTREE, capture_output=True, text=True, timeout=60, check=False)
    assert child.returncode == 0, child.stderr
    assert kernel(fresh, EXPECTED_A) == EXPECTED_A
    written = {str(p.relative_to(proc_sys)).replace("/", ".") for p in files if p.stat().st_size}
    assert written == set(EXPECTED_A)


def test_kill_at_the_file_step_then_recover(tmp_path: Path):
    extra = profiles(tmp_path)
    seen = events_of(Machine(tmp_path / "count", extra_profiles=extra), "apply", "prof_a")
    written = seen.index(f"file {REL}") + 1
    assert written == len(seen) - 1  # the last change, then the commit
    assert seen[-1] == "record apply-commit"
    for n in (written - 1, written):
        m = Machine(tmp_path / f"apply-{n}", extra_profiles=extra)
        pristine = m.snapshot()
        child = run_child(m, n, "apply", "prof_a")
        assert child.returncode == -signal.SIGKILL, child.stderr
        path = m.base / "root" / REL
        if n == written:
            assert parse_sysctl_d(path.read_bytes()) == EXPECTED_A
        else:
            assert not path.exists()
        assert m.new_engine().recover().action == "rolled-back"
        assert m.snapshot() == pristine, n

    # Killed while switching A -> B just after B's file replaced A's.
    twin = Machine(tmp_path / "count-switch", extra_profiles=extra)
    twin.engine.apply("prof_a", FACTS)
    n = events_of(twin, "apply", "prof_b").index(f"file {REL}") + 1
    m = Machine(tmp_path / "switch", extra_profiles=extra)
    pristine = m.snapshot()
    m.engine.apply("prof_a", FACTS)
    child = run_child(m, n, "apply", "prof_b")
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert parse_sysctl_d((m.base / "root" / REL).read_bytes()) == EXPECTED_B
    assert m.new_engine().recover().action == "rolled-back"
    assert m.snapshot() == pristine
