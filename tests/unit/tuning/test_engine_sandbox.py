"""The engine against a sandbox machine: apply, verify, revert, switch, idempotence.

Truth is read from the sandbox files directly (Machine.proc/.sys/.snapshot), never from
the engine's own reports.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from oseprovd import errors
from oseprovd.tuning.facts import MachineFacts
from oseprovd.tuning.limits import LIMITS_FILE

from . import sandbox
from .conftest import Machine

FACTS = MachineFacts()
POLICIES = ("policy0", "policy1")


def gov(m: Machine, policy: str) -> str:
    return m.sys(f"{sandbox.CPUFREQ}/{policy}/scaling_governor")


def sched(m: Machine, dev: str) -> str:
    return m.sys(f"{sandbox.DISKS[dev][0]}/queue/scheduler")


def read_ahead(m: Machine, dev: str) -> str:
    return m.sys(f"{sandbox.DISKS[dev][0]}/queue/read_ahead_kb")


def test_server_production_sets_every_family_and_revert_restores_exactly(machine: Machine):
    before = machine.snapshot()
    result = machine.engine.apply("server_production", FACTS)
    assert result.complete, result.outcomes
    # sysctl / memory / network
    assert machine.proc("vm.swappiness") == "0"
    assert machine.proc("fs.file-max") == "2097152"
    assert machine.proc("net.ipv4.tcp_congestion_control") == "cubic"
    assert machine.proc("net.core.netdev_max_backlog") == "16384"
    assert machine.sys("kernel/mm/transparent_hugepage/enabled") == "always [madvise] never"
    # cpu, per policy
    for p in POLICIES:
        assert gov(machine, p) == "performance"
        assert machine.sys(f"{sandbox.CPUFREQ}/{p}/energy_performance_preference") == "performance"
    # disk: "none" for every type; loop devices are not tuned unless asked
    for dev in ("nvme0n1", "sda", "sdb", "vda"):
        assert sched(machine, dev).split()[0] == "[none]", dev
    assert sched(machine, "loop0") == "[none] mq-deadline kyber bfq"
    assert read_ahead(machine, "sda") == "1024"  # balanced's rotational read-ahead
    # limits: a file of ours next to the admin's
    text = (machine.base / "root" / LIMITS_FILE).read_text()
    assert "*\tsoft\tnofile\t1048576" in text and "*\thard\tnofile\t1048576" in text
    assert (machine.base / "root/etc/security/limits.d/10-local.conf").exists()

    verify = machine.engine.verify()
    assert verify.profile == "server_production"
    assert verify.drifted == 0 and all(i.status == "ok" for i in verify.items)

    revert = machine.engine.revert()
    assert revert.complete, revert.outcomes
    assert machine.snapshot() == before
    assert machine.engine.active_profile is None


def test_verify_reports_drift_knob_by_knob_and_reapply_fixes_it(machine: Machine):
    before = machine.snapshot()
    machine.engine.apply("server_production", FACTS)
    (machine.base / "proc/sys/vm/swappiness").write_text("33\n")
    policy1 = machine.base / "sys" / sandbox.CPUFREQ / "policy1/scaling_governor"
    policy1.write_text("powersave\n")
    verify = machine.engine.verify()
    drifted = {i.knob: i.current for i in verify.items if i.status == "drifted"}
    assert drifted == {"sysctl:vm.swappiness": "33", "cpu:policy1:scaling_governor": "powersave"}
    again = machine.engine.apply("server_production", FACTS)
    changed = {o.knob for o in again.outcomes if o.status == "changed"}
    assert changed == set(drifted)
    assert machine.engine.verify().drifted == 0
    # The originals are still the pristine ones, not the drifted values.
    machine.engine.revert()
    assert machine.snapshot() == before


def test_apply_is_idempotent(machine: Machine):
    before = machine.snapshot()
    machine.engine.apply("throughput", FACTS)
    after_first = machine.snapshot()
    second = machine.engine.apply("throughput", FACTS)
    assert {o.status for o in second.outcomes} <= {"unchanged", "not-applicable"}
    assert machine.snapshot() == after_first
    machine.engine.revert()
    assert machine.snapshot() == before


def test_dry_run_changes_nothing_and_shows_the_plan(machine: Machine):
    before = machine.snapshot()
    result = machine.engine.apply("desktop_performance", FACTS, dry_run=True)
    assert result.dry_run and not result.outcomes
    items = {i.knob: i for i in result.plan.items}
    assert items["sysctl:vm.swappiness"].current == "60"
    assert items["sysctl:vm.swappiness"].target == "1"
    assert items["sysctl:vm.swappiness"].change
    assert items["disk:sda:scheduler"].target == "kyber"
    assert items["sysctl:net.ipv4.tcp_congestion_control"].applicable  # tcp_bbr exists
    assert machine.snapshot() == before
    assert machine.engine.active_profile is None


def test_bbr_module_loaded_only_when_asked_and_unloaded_on_revert(machine: Machine):
    before = machine.snapshot()
    machine.engine.apply("server_production", FACTS)  # cubic: already available
    assert machine.loader.loaded == []
    machine.engine.revert()
    machine.engine.apply("desktop_performance", FACTS)
    assert machine.loader.loaded == ["tcp_bbr"]
    assert machine.proc("net.ipv4.tcp_congestion_control") == "bbr"
    assert all(sched(machine, d).split()[2] == "[kyber]" for d in ("nvme0n1", "sda", "sdb"))
    # vda offers no kyber: not applicable, left alone
    assert sched(machine, "vda") == "[none] mq-deadline"
    machine.engine.revert()
    assert machine.loader.unloaded == ["tcp_bbr"]
    assert machine.snapshot() == before


def test_missing_congestion_module_is_not_applicable(machine: Machine, extra_dir: Path):
    (extra_dir / "vegas.toml").write_text('[network]\ntcp_congestion_control = "vegas"\n')
    m = Machine(machine.base.parent / "m2", extra_profiles=extra_dir)
    plan = m.engine.plan("vegas", FACTS)
    item, file = plan.items
    assert not item.applicable and "tcp_vegas" in item.reason
    assert file.knob == "sysctl.d:file" and not file.applicable  # nothing to persist
    m.engine.apply("vegas", FACTS)
    assert m.loader.loaded == []
    assert not (m.base / "root/etc/sysctl.d/90-ose-tuning.conf").exists()
    assert m.proc("net.ipv4.tcp_congestion_control") == "cubic"


def test_switch_leaves_no_trace_of_the_old_profile(machine: Machine):
    pristine = machine.snapshot()
    first = machine.engine.apply("server_production", FACTS)
    assert first.complete
    only_b = machine.snapshot(times=False)
    machine.engine.revert()
    assert machine.snapshot() == pristine

    machine.engine.apply("desktop_performance", FACTS)
    switched = machine.engine.apply("server_production", FACTS)
    assert switched.reverted_previous == "desktop_performance"
    assert machine.snapshot(times=False) == only_b
    machine.engine.revert()
    assert machine.snapshot() == pristine


def test_engine_restart_keeps_state_and_reverts(machine: Machine):
    before = machine.snapshot()
    machine.engine.apply("latency", FACTS)
    fresh = machine.new_engine()
    assert fresh.active_profile == "latency"
    assert fresh.recover().action == "none"
    assert fresh.verify().drifted == 0
    fresh.revert()
    assert machine.snapshot() == before


def test_no_cpufreq_means_not_applicable_not_error(machine: Machine):
    import shutil

    shutil.rmtree(machine.base / "sys" / sandbox.CPUFREQ)
    (machine.base / "sys/kernel/mm/transparent_hugepage").joinpath("enabled").unlink()
    before = machine.snapshot()
    result = machine.engine.apply("desktop_performance", FACTS)
    na = {o.knob for o in result.outcomes if o.status == "not-applicable"}
    assert {"cpu:*:governor", "cpu:*:energy_performance_preference", "cpu:*:boost",
            "memory:transparent_hugepages"} <= na
    assert result.complete
    verify = machine.engine.verify()
    assert verify.drifted == 0
    machine.engine.revert()
    assert machine.snapshot() == before


def test_verify_in_a_vm_where_a_knob_vanished_says_not_applicable(machine: Machine):
    machine.engine.apply("server_production", FACTS)
    (machine.base / "proc/sys/fs/file-max").unlink()
    items = {i.knob: i.status for i in machine.engine.verify().items}
    assert items["sysctl:fs.file-max"] == "not-applicable"


def test_old_kernel_scheduler_falls_back_to_noop(machine: Machine):
    path = machine.base / "sys" / sandbox.DISKS["sda"][0] / "queue/scheduler"
    path.write_text("[noop] deadline cfq\n")
    path.parent.joinpath("rotational").write_text("0\n")
    plan = {i.knob: i for i in machine.engine.plan("laptop_battery", FACTS).items}
    assert plan["disk:sda:scheduler"].target == "noop"
    assert plan["disk:nvme0n1:scheduler"].target == "none"


def test_boost_inverted_on_intel_pstate(machine: Machine):
    (machine.base / "sys" / sandbox.CPUFREQ / "boost").unlink()
    no_turbo = machine.base / "sys/devices/system/cpu/intel_pstate/no_turbo"
    no_turbo.parent.mkdir(parents=True)
    no_turbo.write_text("0\n")
    before = machine.snapshot()
    machine.engine.apply("laptop_battery", FACTS)
    assert no_turbo.read_text().strip() == "1"  # boost off
    machine.engine.revert()
    assert machine.snapshot() == before


def test_power_manager_active_refuses_power_knobs(machine: Machine):
    before = machine.snapshot()
    facts = MachineFacts(power_managers=["tuned"])
    with pytest.raises(errors.Busy, match="tuned is active"):
        machine.engine.apply("desktop_performance", facts)
    assert machine.snapshot() == before
    result = machine.engine.apply("desktop_performance", facts, skip_power=True)
    assert all(gov(machine, p) == "schedutil" for p in POLICIES)
    assert machine.proc("vm.swappiness") == "1"
    skipped = [o for o in result.outcomes if o.knob.startswith("cpu:") and o.before != o.target]
    assert skipped and all("managed by tuned" in o.detail for o in skipped)


def test_plan_digest_must_match_when_given(machine: Machine):
    plan = machine.engine.plan("latency", FACTS)
    (machine.base / "proc/sys/vm/swappiness").write_text("61\n")
    with pytest.raises(errors.InvalidArguments, match="changed since"):
        machine.engine.apply("latency", FACTS, expected_digest=plan.digest)
    fresh = machine.engine.plan("latency", FACTS)
    assert machine.engine.apply("latency", FACTS, expected_digest=fresh.digest).complete


class RefusingRoot(sandbox.SandboxRoot):
    def write_existing(self, rel: str, data: bytes) -> None:
        if rel == "sys/vm/dirty_ratio":
            raise OSError(errno.EINVAL, "Invalid argument")
        super().write_existing(rel, data)


class IgnoringRoot(sandbox.SandboxRoot):
    def write_existing(self, rel: str, data: bytes) -> None:
        if rel != "sys/vm/swappiness":
            super().write_existing(rel, data)


def test_what_did_not_take_is_reported(machine: Machine):
    before = machine.snapshot()
    engine = machine.engine
    proc = machine.base / "proc"
    engine.knobs.roots = type(engine.knobs.roots)(RefusingRoot(proc), engine.knobs.roots.sys,
                                                  engine.knobs.roots.target)
    result = engine.apply("latency", FACTS)
    outcome = {o.knob: o for o in result.outcomes}
    assert outcome["sysctl:vm.dirty_ratio"].status == "failed"
    assert "refused" in outcome["sysctl:vm.dirty_ratio"].detail
    assert not result.complete
    engine.revert()
    engine.knobs.roots = type(engine.knobs.roots)(IgnoringRoot(proc), engine.knobs.roots.sys,
                                                  engine.knobs.roots.target)
    result = engine.apply("latency", FACTS)
    outcome = {o.knob: o for o in result.outcomes}
    assert outcome["sysctl:vm.swappiness"].status == "did-not-take"
    assert outcome["sysctl:vm.swappiness"].after == "60"
    engine.revert()
    assert machine.snapshot() == before


def test_limits_file_of_the_admin_restored_with_bytes_mode_and_time(machine: Machine):
    path = machine.base / "root" / LIMITS_FILE
    path.write_bytes(b"# admin's own\n*\tsoft\tnofile\t4096\n\xff\n")
    path.chmod(0o600)
    import os

    os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    before = machine.snapshot()
    machine.engine.apply("server_production", FACTS)
    assert b"1048576" in path.read_bytes() and path.stat().st_mode & 0o777 == 0o644
    machine.engine.revert()
    assert machine.snapshot() == before


def test_no_limits_dir_is_not_applicable(machine: Machine):
    import shutil

    shutil.rmtree(machine.base / "root/etc/security")
    result = machine.engine.apply("server_production", FACTS)
    (o,) = [o for o in result.outcomes if o.knob == "limits:file"]
    assert o.status == "not-applicable"
    assert not (machine.base / "root/etc/security").exists()


def test_disk_device_filter_includes_loop_devices(tmp_path: Path):
    m = Machine(tmp_path, disk_devices=["loop*"])
    before = m.snapshot()
    m.engine.apply("throughput", FACTS)
    assert sched(m, "loop0").split()[0] == "[none]"  # virtual: none
    assert read_ahead(m, "loop0") == "1024"
    assert read_ahead(m, "sda") == "128"  # not selected
    m.engine.revert()
    assert m.snapshot() == before


def test_sysfs_link_leaving_the_root_is_refused(machine: Machine):
    import os

    link = machine.base / "sys/block/sdz"
    os.symlink("../../../../etc", link)
    with pytest.raises(errors.OseError, match="outside"):
        machine.engine.plan("balanced", FACTS)


def test_every_knob_family_apply_verify_drift_revert(tmp_path: Path, extra_dir: Path):
    from .test_crash_recovery import ALL_KNOBS

    (extra_dir / "all_knobs.toml").write_text(ALL_KNOBS)
    m = Machine(tmp_path, extra_profiles=extra_dir, disk_devices=["*"])
    pristine = m.snapshot()
    assert m.engine.apply("all_knobs", FACTS).complete
    cpufreq = sandbox.CPUFREQ
    expected_files = {
        f"{cpufreq}/policy0/scaling_governor": "powersave",
        f"{cpufreq}/policy1/energy_performance_preference": "power",
        f"{cpufreq}/boost": "0",
        "firmware/acpi/platform_profile": "low-power",
        "kernel/mm/transparent_hugepage/enabled": "always madvise [never]",
        "kernel/mm/transparent_hugepage/defrag": "always [defer] defer+madvise madvise never",
        "module/zswap/parameters/enabled": "Y",
    }
    for rel, want in expected_files.items():
        assert m.sys(rel) == want, rel
    assert sched(m, "nvme0n1") == "none mq-deadline [kyber] bfq"
    assert sched(m, "sda") == "none mq-deadline kyber [bfq]"
    assert sched(m, "vda") == "none [mq-deadline]"
    assert sched(m, "loop0") == "none [mq-deadline] kyber bfq"
    assert (read_ahead(m, "nvme0n1"), read_ahead(m, "sdb"), read_ahead(m, "sda"),
            read_ahead(m, "vda")) == ("256", "512", "2048", "64")
    assert m.proc("net.ipv4.tcp_rmem") == "8192\t65536\t8388608"
    assert m.proc("net.ipv4.tcp_congestion_control") == "bbr"
    assert m.proc("net.core.default_qdisc") == "fq"
    assert m.proc("fs.file-max") == "4194304"
    limits_text = (m.base / "root" / LIMITS_FILE).read_text()
    assert "*\thard\tnproc\tunlimited" in limits_text

    verify = m.engine.verify()
    assert verify.drifted == 0 and len(verify.items) > 20
    # Drift one knob of each family behind the engine's back.
    (m.base / "sys" / cpufreq / "policy0/scaling_governor").write_text("performance\n")
    (m.base / "sys/module/zswap/parameters/enabled").write_text("N\n")
    (m.base / "sys/firmware/acpi/platform_profile").write_text("balanced\n")
    (m.base / "sys" / sandbox.DISKS["sda"][0] / "queue/read_ahead_kb").write_text("128\n")
    (m.base / "proc/sys/net/core/somaxconn").write_text("4096\n")
    (m.base / "root" / LIMITS_FILE).write_text("# edited\n")
    drifted = {i.knob for i in m.engine.verify().items if i.status == "drifted"}
    assert drifted == {"cpu:policy0:scaling_governor", "memory:zswap", "power:platform_profile",
                       "disk:sda:read_ahead_kb", "sysctl:net.core.somaxconn", "limits:file"}
    assert m.engine.revert().complete
    assert m.snapshot() == pristine


def test_reapply_after_facts_changed_restores_knobs_no_longer_wanted(tmp_path: Path,
                                                                      extra_dir: Path):
    (extra_dir / "big.toml").write_text(
        "[memory]\nswappiness = 20\n[[override]]\nwhen = { min_memory_gib = 32 }\n"
        "memory = { dirty_ratio = 5 }\n")
    m = Machine(tmp_path, extra_profiles=extra_dir)
    pristine = m.snapshot()
    m.engine.apply("big", MachineFacts(memory_bytes=64 << 30))
    assert m.proc("vm.dirty_ratio") == "5"
    m.engine.apply("big", MachineFacts(memory_bytes=8 << 30))
    assert m.proc("vm.dirty_ratio") == "20"  # back to its original
    assert m.proc("vm.swappiness") == "20"
    assert {i.knob for i in m.engine.verify().items} == {"sysctl:vm.swappiness",
                                                         "sysctl.d:file"}
    sysctl_d = (m.base / "root/etc/sysctl.d/90-ose-tuning.conf").read_text()
    assert "vm.swappiness = 20" in sysctl_d and "dirty_ratio" not in sysctl_d
    m.engine.revert()
    assert m.snapshot() == pristine


def test_switch_rechecks_power_managers_after_reverting_the_old_profile(machine: Machine):
    # desktop sets "performance"; server wants it too, so before the switch nothing
    # seems to change. After desktop is reverted the governor is back to schedutil, and
    # changing it now would fight tuned.
    machine.engine.apply("desktop_performance", FACTS)
    with pytest.raises(errors.Busy, match="tuned"):
        machine.engine.apply("server_production", MachineFacts(power_managers=["tuned"]))
    assert all(gov(machine, p) == "schedutil" for p in POLICIES)


class SwappinessRefused(sandbox.SandboxRoot):
    def write_existing(self, rel: str, data: bytes) -> None:
        if rel == "sys/vm/swappiness":
            raise OSError(errno.EBUSY, "Device or resource busy")
        super().write_existing(rel, data)


def test_revert_when_a_disk_went_away_and_when_the_kernel_refuses(machine: Machine):
    import shutil

    machine.engine.apply("server_production", FACTS)
    shutil.rmtree(machine.base / "sys" / sandbox.DISKS["sdb"][0])
    (machine.base / "sys/block/sdb").unlink()
    engine = machine.engine
    proc = machine.base / "proc"
    good_roots = engine.knobs.roots
    engine.knobs.roots = type(good_roots)(SwappinessRefused(proc), good_roots.sys,
                                          good_roots.target)
    result = engine.revert()
    status = {o.knob: o.status for o in result.outcomes}
    assert status["disk:sdb:scheduler"] == "gone"
    assert status["sysctl:vm.swappiness"] == "failed"
    assert not result.complete
    # What failed stays in the journal: a later revert finishes the job.
    fresh = machine.new_engine()
    assert fresh.active_profile is None
    assert list(fresh.state().originals) == ["sysctl:vm.swappiness"]
    assert fresh.revert().complete
    assert machine.proc("vm.swappiness") == "60"
