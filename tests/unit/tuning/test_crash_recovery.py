"""Crash recovery: a child process applying (or reverting) a profile is SIGKILLed right
after its n-th event (a journal record, a knob written, a file replaced or removed, a
module loaded: crashrun.py), for every n; a fresh engine's recover() must bring the
sandbox back to the original values, which the test reads from the files directly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from oseprovd.tuning.facts import MachineFacts

from .conftest import Machine
from .crashrun import events

WORKTREE = Path(__file__).resolve().parents[3]
COMMIT = "record apply-commit"


def run_child(m: Machine, n: int, op: str, profile: str = "") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tests.unit.tuning.crashrun", str(m.base),
            str(m.journal_path), str(n), op]
    if profile:
        argv.append(profile)
    if m.extra:
        argv.append(str(m.extra))
    return subprocess.run(argv, cwd=WORKTREE, capture_output=True, text=True, timeout=60,
                          check=False)


def events_of(m: Machine, op: str, profile: str = "") -> list[str]:
    """The events of one operation, in order, as the child will make them (counted on a
    twin machine in the same state)."""
    seen: list[str] = []
    with events(seen.append):
        if op == "apply":
            m.engine.apply(profile, MachineFacts())
        else:
            m.engine.revert()
    return seen


def changes_machine(event: str) -> bool:
    return not event.startswith(("record ", "replace "))


def journaled_first(seen: list[str], begin: str = "record apply-begin") -> bool:
    return seen[0] == begin


@pytest.mark.slow
def test_crash_after_every_event_of_apply_then_recover(tmp_path: Path):
    seen = events_of(Machine(tmp_path / "count", disk_devices=["*"]), "apply",
                     "server_production")
    # The whole plan is journaled before the first change, and committed after the last.
    assert journaled_first(seen) and seen[-1] == COMMIT, seen
    assert sum(map(changes_machine, seen)) > 10
    assert [e for e in seen if e.startswith("record")] == ["record apply-begin", COMMIT]
    for n in range(1, len(seen) + 1):
        m = Machine(tmp_path / f"apply-{n}", disk_devices=["*"])
        pristine = m.snapshot()
        child = run_child(m, n, "apply", "server_production")
        assert child.returncode == -signal.SIGKILL, (n, child.stdout, child.stderr)
        # The kill landed where the twin said: after the first change, the machine shows it.
        if any(map(changes_machine, seen[:n])):
            assert m.snapshot() != pristine, n
        recovery = m.new_engine().recover()
        if n < len(seen):
            assert recovery.action == "rolled-back", n
            assert recovery.revert is not None and recovery.revert.complete
        else:  # killed after the commit: the apply stands, and reverts cleanly
            assert recovery.action == "none"
            assert m.new_engine().active_profile == "server_production"
            m.new_engine().revert()
        assert m.snapshot() == pristine, f"crash after event {n} of {len(seen)}: {seen[n - 1]}"
        assert m.new_engine().active_profile is None


@pytest.mark.slow
def test_crash_during_revert_and_during_a_switch(tmp_path: Path):
    # Killed inside a revert, after each of its events: recover() finishes it.
    twin = Machine(tmp_path / "count-revert", disk_devices=["*"])
    twin.engine.apply("desktop_performance", MachineFacts())
    seen = events_of(twin, "revert")
    assert journaled_first(seen, "record revert-begin"), seen
    assert seen[-1] == "record revert-commit", seen
    for n in range(1, len(seen)):
        m = Machine(tmp_path / f"revert-{n}", disk_devices=["*"])
        pristine = m.snapshot()
        m.engine.apply("desktop_performance", MachineFacts())
        child = run_child(m, n, "revert")
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert m.new_engine().recover().action == "finished-revert"
        assert m.snapshot() == pristine, f"crash after event {n}: {seen[n - 1]}"

    # Killed while switching desktop -> server (while the old profile's leftovers are
    # restored, and while the new one is written): everything goes back to the original
    # values.
    twin = Machine(tmp_path / "count-switch", disk_devices=["*"])
    twin.engine.apply("desktop_performance", MachineFacts())
    seen = events_of(twin, "apply", "server_production")
    records = [e for e in seen if e.startswith("record")]
    assert records == ["record apply-begin", "record originals", COMMIT], seen
    # Leftovers are restored between the two records, the new values written after both.
    begin, originals = seen.index("record apply-begin"), seen.index("record originals")
    assert journaled_first(seen) and any(map(changes_machine, seen[begin:originals])), seen
    assert not any(map(changes_machine, seen[:begin])), seen
    for n in range(1, len(seen)):
        m = Machine(tmp_path / f"switch-{n}", disk_devices=["*"])
        pristine = m.snapshot()
        m.engine.apply("desktop_performance", MachineFacts())
        child = run_child(m, n, "apply", "server_production")
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert m.new_engine().recover().action == "rolled-back"
        assert m.snapshot() == pristine, f"crash after event {n}: {seen[n - 1]}"


def test_torn_journal_tail_is_ignored(machine: Machine):
    pristine = machine.snapshot()
    machine.engine.apply("latency", MachineFacts())
    with open(machine.journal_path, "a") as f:
        f.write('{"step": "apply-begin", "data": {"txn"')  # died inside write()
    fresh = machine.new_engine()
    assert fresh.active_profile == "latency"
    fresh.revert()
    assert machine.snapshot() == pristine
    # The revert's records were not glued onto the torn line: the journal says so too.
    assert machine.new_engine().active_profile is None
    assert machine.new_engine().recover().action == "none"


ALL_KNOBS = """
[cpu]
governor = "powersave"
energy_performance_preference = "power"
boost = false
[power]
platform_profile = "low-power"
[memory]
transparent_hugepages = "never"
thp_defrag = "defer"
zswap = true
swappiness = 5
dirty_ratio = 12
[disk]
scheduler = { nvme = "kyber", ssd = "bfq", rotational = "bfq", virtual = "mq-deadline" }
read_ahead_kb = { nvme = 256, ssd = 512, rotational = 2048, virtual = 64 }
[network]
tcp_congestion_control = "bbr"
tcp_rmem = [8192, 65536, 8388608]
default_qdisc = "fq"
somaxconn = 8192
[sysctl]
"fs.file-max" = 4194304
"kernel.numa_balancing" = 0
[limits]
nofile = 524288
nproc = "unlimited"
"""


@pytest.mark.slow
def test_every_knob_recovers_from_a_crash_after_every_event(tmp_path: Path, extra_dir: Path):
    (extra_dir / "all_knobs.toml").write_text(ALL_KNOBS)
    check = Machine(tmp_path / "check", extra_profiles=extra_dir, disk_devices=["*"])
    pristine = check.snapshot()
    seen = events_of(check, "apply", "all_knobs")
    result = check.engine.apply("all_knobs", MachineFacts())  # again: nothing to do
    assert all(o.status != "changed" for o in result.outcomes)
    check.engine.revert()
    assert check.snapshot() == pristine
    result = check.engine.apply("all_knobs", MachineFacts())
    changed = {o.knob.split(":")[0] for o in result.outcomes if o.status == "changed"}
    assert changed == {"cpu", "power", "memory", "disk", "sysctl", "limits", "sysctl.d"}, \
        result.outcomes
    assert result.complete and check.engine.verify().drifted == 0
    assert "load tcp_bbr" in seen and seen[-1] == COMMIT, seen
    for n in range(1, len(seen)):  # the last is the commit: covered above
        m = Machine(tmp_path / f"all-{n}", extra_profiles=extra_dir, disk_devices=["*"])
        pristine = m.snapshot()
        child = run_child(m, n, "apply", "all_knobs")
        assert child.returncode == -signal.SIGKILL, (n, child.stderr)
        assert m.new_engine().recover().action == "rolled-back"
        assert m.snapshot() == pristine, f"crash after event {n} of {len(seen)}: {seen[n - 1]}"


# Two profiles whose knobs move no other knob (sysctls outside the coupled pairs, the
# I/O scheduler, a limits.d file): a switch journals its whole plan in one record.
SWITCH_A = """
[memory]
swappiness = 5
transparent_hugepages = "never"
[network]
somaxconn = 8192
tcp_congestion_control = "bbr"
[disk]
scheduler = { default = "kyber" }
[limits]
nofile = 524288
"""
SWITCH_B = """
[memory]
swappiness = 30
[network]
netdev_max_backlog = 5000
[disk]
scheduler = { default = "bfq" }
[sysctl]
"kernel.numa_balancing" = 0
"""


@pytest.mark.slow
def test_an_uncoupled_switch_is_one_record_and_recovers_after_every_event(
        tmp_path: Path, extra_dir: Path):
    (extra_dir / "switch_a.toml").write_text(SWITCH_A)
    (extra_dir / "switch_b.toml").write_text(SWITCH_B)
    twin = Machine(tmp_path / "count", extra_profiles=extra_dir, disk_devices=["*"])
    pristine = twin.snapshot()
    twin.engine.apply("switch_a", MachineFacts())
    seen = events_of(twin, "apply", "switch_b")
    # One record before the first change (the old profile's leftovers are put back
    # after it: the bbr module unloaded, the limits.d file removed), one at the end.
    assert [e for e in seen if e.startswith("record")] == ["record apply-begin", COMMIT]
    assert journaled_first(seen) and seen[-1] == COMMIT, seen
    assert "unload tcp_bbr" in seen and "unlink etc/security/limits.d/90-ose-tuning.conf" \
        in seen, seen
    twin.engine.revert()
    assert twin.snapshot() == pristine
    for n in range(1, len(seen) + 1):
        m = Machine(tmp_path / f"switch-{n}", extra_profiles=extra_dir, disk_devices=["*"])
        pristine = m.snapshot()
        m.engine.apply("switch_a", MachineFacts())
        child = run_child(m, n, "apply", "switch_b")
        assert child.returncode == -signal.SIGKILL, child.stderr
        recovery = m.new_engine().recover()
        assert recovery.action == ("rolled-back" if n < len(seen) else "none"), n
        if n == len(seen):
            # The switch stands, with nothing left of switch_a; it reverts cleanly.
            assert m.new_engine().active_profile == "switch_b"
            assert m.proc("net.core.somaxconn") == "4096" and m.proc("vm.swappiness") == "30"
            m.new_engine().revert()
        assert m.snapshot() == pristine, f"crash after event {n}: {seen[n - 1]}"


def test_recover_sweeps_a_temp_file_a_killed_write_left(machine: Machine):
    """A process killed after a file's new text went to its temp file, before its begin
    record was on disk, left nothing to roll back but the temp: recover() removes it
    (and only the temp files of the files tuning owns)."""
    pristine = machine.snapshot()
    limits_d = machine.base / "root/etc/security/limits.d"
    stale = limits_d / ".90-ose-tuning.conf.ose-0123456789ab"
    stale.write_text("* soft nofile 4096\n")
    other = limits_d / ".90-ose-tuning.conf.ose-not-ours"
    other.write_text("x\n")
    assert machine.new_engine().recover().action == "none"
    assert not stale.exists() and other.exists()
    other.unlink()
    assert machine.snapshot() == pristine


def test_a_journal_of_the_older_one_record_per_knob_format_still_rolls_back(
        machine: Machine):
    """A daemon upgraded while an apply of the older format was cut short: its per-knob
    "original" records are still honoured."""
    swappiness = machine.base / "proc/sys/vm/swappiness"
    assert swappiness.read_text().strip() == "60"
    swappiness.write_text("7\n")  # what the cut-short apply had written
    lines = [
        {"step": "apply-begin", "data": {"txn": "t", "profile": "latency",
                                         "targets": {"sysctl:vm.swappiness": "7"}}},
        {"step": "original", "data": {"txn": "t", "knob": "sysctl:vm.swappiness",
                                      "saved": {"value": "60"}}},
        {"step": "written", "data": {"txn": "t", "knob": "sysctl:vm.swappiness",
                                     "took": True}},
    ]
    machine.journal_path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    recovery = machine.new_engine().recover()
    assert recovery.action == "rolled-back" and recovery.revert and recovery.revert.complete
    assert swappiness.read_text().strip() == "60"
    assert machine.new_engine().active_profile is None
