"""Crash recovery: a child process applying (or reverting) a profile is SIGKILLed right
after its n-th journal record; a fresh engine's recover() must bring the sandbox back to
the original values, which the test reads from the files directly."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from oseprovd.tuning.facts import MachineFacts

from .conftest import Machine

WORKTREE = Path(__file__).resolve().parents[3]


def run_child(m: Machine, n: int, op: str, profile: str = "") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tests.unit.tuning.crashrun", str(m.base),
            str(m.journal_path), str(n), op]
    if profile:
        argv.append(profile)
    if m.extra:
        argv.append(str(m.extra))
    return subprocess.run(argv, cwd=WORKTREE, capture_output=True, text=True, timeout=60,
                          check=False)


def records_of_a_full_apply(tmp_path: Path, profile: str, extra: Path | None = None) -> int:
    m = Machine(tmp_path / "count", extra_profiles=extra, disk_devices=["*"])
    m.engine.apply(profile, MachineFacts())
    # begin + (original, written) per changed knob + commit; the journal is compacted
    # after commit, so count from the outcome instead of reading it back.
    result = m.new_engine().apply(profile, MachineFacts())  # idempotent: no writes
    assert all(o.status != "changed" for o in result.outcomes)
    m.engine.revert()
    first = m.new_engine().apply(profile, MachineFacts())
    return 2 + 2 * sum(o.status in ("changed", "did-not-take", "failed") for o in first.outcomes)


@pytest.mark.slow
def test_crash_at_several_points_of_apply_then_recover(tmp_path: Path):
    total = records_of_a_full_apply(tmp_path, "server_production")
    assert total > 20
    points = sorted({1, 2, 3, 4, total // 2, total // 2 + 1, total - 1, total})
    for n in points:
        m = Machine(tmp_path / f"apply-{n}", disk_devices=["*"])
        pristine = m.snapshot()
        child = run_child(m, n, "apply", "server_production")
        assert child.returncode == -signal.SIGKILL, (n, child.stdout, child.stderr)
        if n < total:
            assert m.snapshot() != pristine or n <= 2, n  # it had started writing
        recovery = m.new_engine().recover()
        if n < total:
            assert recovery.action == "rolled-back", n
            assert recovery.revert is not None and recovery.revert.complete
        else:  # killed after the commit: the apply stands, and reverts cleanly
            assert recovery.action == "none"
            assert m.new_engine().active_profile == "server_production"
            m.new_engine().revert()
        assert m.snapshot() == pristine, f"crash after record {n} of {total}"
        assert m.new_engine().active_profile is None


@pytest.mark.slow
def test_crash_during_revert_and_during_a_switch(tmp_path: Path):
    # Killed inside a revert: recover() finishes it.
    m = Machine(tmp_path / "revert", disk_devices=["*"])
    pristine = m.snapshot()
    m.engine.apply("desktop_performance", MachineFacts())
    child = run_child(m, 5, "revert")
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert m.new_engine().recover().action == "finished-revert"
    assert m.snapshot() == pristine

    # Killed while switching desktop -> server (while the old profile's leftovers are
    # restored, and while the new one is written): everything goes back to the original
    # values. How many records a switch makes is counted on a twin machine.
    probe = Machine(tmp_path / "probe", disk_devices=["*"])
    probe.engine.apply("desktop_performance", MachineFacts())
    records = []
    record = probe.engine.journal.record
    probe.engine.journal.record = lambda step, data: (records.append(step),  # type: ignore[method-assign]
                                                      record(step, data))
    probe.engine.apply("server_production", MachineFacts())
    total = len(records)
    assert records[0] == "apply-begin" and "restored" in records and total > 6
    for n in sorted({1, 2, records.index("restored") + 1, total // 2, total - 2}):
        m = Machine(tmp_path / f"switch-{n}", disk_devices=["*"])
        pristine = m.snapshot()
        m.engine.apply("desktop_performance", MachineFacts())
        child = run_child(m, n, "apply", "server_production")
        assert child.returncode == -signal.SIGKILL, child.stderr
        assert m.new_engine().recover().action in ("rolled-back", "finished-revert")
        assert m.snapshot() == pristine, n


def test_torn_journal_tail_is_ignored(machine: Machine):
    pristine = machine.snapshot()
    machine.engine.apply("latency", MachineFacts())
    with open(machine.journal_path, "a") as f:
        f.write('{"step": "apply-begin", "data": {"txn"')  # died inside write()
    fresh = machine.new_engine()
    assert fresh.active_profile == "latency"
    fresh.revert()
    assert machine.snapshot() == pristine


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
def test_every_knob_recovers_from_a_crash_at_every_third_step(tmp_path: Path, extra_dir: Path):
    (extra_dir / "all_knobs.toml").write_text(ALL_KNOBS)
    total = records_of_a_full_apply(tmp_path, "all_knobs", extra_dir)
    check = Machine(tmp_path / "check", extra_profiles=extra_dir, disk_devices=["*"])
    result = check.engine.apply("all_knobs", MachineFacts())
    changed = {o.knob.split(":")[0] for o in result.outcomes if o.status == "changed"}
    assert changed == {"cpu", "power", "memory", "disk", "sysctl", "limits", "sysctl.d"}, \
        result.outcomes
    assert result.complete and check.engine.verify().drifted == 0
    for n in [*range(1, total, 3), total - 1]:  # total is the commit: covered above
        m = Machine(tmp_path / f"all-{n}", extra_profiles=extra_dir, disk_devices=["*"])
        pristine = m.snapshot()
        child = run_child(m, n, "apply", "all_knobs")
        assert child.returncode == -signal.SIGKILL, (n, child.stderr)
        assert m.new_engine().recover().action == "rolled-back"
        assert m.snapshot() == pristine, f"crash after record {n} of {total}"
