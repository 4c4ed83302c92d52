"""recommend() explains its choice fact by fact; holds apply and release profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from oseprovd import errors
from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.facts import MachineFacts, detect_power_managers

from .conftest import Machine


@pytest.mark.parametrize(("facts", "expected"), [
    (MachineFacts(), "balanced"),
    (MachineFacts(chassis="laptop", has_battery=True), "laptop_battery"),
    (MachineFacts(chassis="laptop", has_battery=False), "balanced"),
    (MachineFacts(chassis="desktop"), "desktop_performance"),
    (MachineFacts(chassis="desktop", virtualization="kvm"), "virtual_guest"),
    (MachineFacts(chassis="rack-mount"), "server_production"),
    (MachineFacts(chassis="vm", virtualization="kvm"), "virtual_guest"),
    (MachineFacts(chassis="vm", virtualization="kvm", cloud_provider="aws"), "aws_guest"),
    (MachineFacts(virtualization="google", cloud_provider="gcp"), "gcp_guest"),
    (MachineFacts(virtualization="microsoft", cloud_provider="azure"), "azure_guest"),
    (MachineFacts(chassis="server", roles=["database"]), "database_server"),
])
def test_recommend_picks_by_facts(machine: Machine, facts: MachineFacts, expected: str):
    assert machine.engine.recommend(facts).profile == expected


def test_recommend_explains_fact_by_fact(machine: Machine):
    rec = machine.engine.recommend(MachineFacts(chassis="notebook", has_battery=True))
    assert rec.profile == "laptop_battery"
    facts = {r.fact: r for r in rec.reasons}
    assert facts["chassis"].value == "notebook" and facts["chassis"].ok
    assert facts["has_battery"].value == "true" and facts["has_battery"].ok
    assert "chassis is notebook" in rec.summary
    # Candidates that did not fit say which fact failed.
    desktop = next(c for c in rec.candidates if c.profile == "desktop_performance")
    assert not desktop.matched
    assert [r.fact for r in desktop.reasons if not r.ok] == ["chassis"]


def test_holds_apply_latest_and_release_back_to_the_choice(machine: Machine):
    pristine = machine.snapshot()
    facts = MachineFacts()
    machine.engine.apply("balanced", facts)
    base = machine.snapshot(times=False)
    h1 = machine.engine.hold("latency", "game", "org.example.Game", facts)
    assert machine.proc("vm.swappiness") == "10"
    h2 = machine.engine.hold("server_production", "build", "org.example.Build", facts)
    assert machine.proc("vm.swappiness") == "0"
    assert machine.engine.release(h2.cookie, facts) == "latency"
    assert machine.proc("vm.swappiness") == "10"
    assert machine.engine.release(h1.cookie, facts) == "balanced"
    assert machine.snapshot(times=False) == base
    with pytest.raises(errors.NotFound):
        machine.engine.release(h1.cookie, facts)
    machine.engine.revert()
    assert machine.snapshot() == pristine


def test_hold_without_a_choice_reverts_on_release(machine: Machine):
    pristine = machine.snapshot()
    facts = MachineFacts()
    h = machine.engine.hold("throughput", "backup", "org.example.Backup", facts)
    assert [x.cookie for x in machine.engine.holds()] == [h.cookie]
    assert machine.engine.release(h.cookie, facts) is None
    assert machine.snapshot() == pristine


def test_hold_of_unknown_profile_is_refused(machine: Machine):
    with pytest.raises(errors.NotFound):
        machine.engine.hold("nope", "x", "y", MachineFacts())
    assert machine.engine.holds() == []


def test_detect_power_managers(tmp_path: Path):
    target = tmp_path / "root"
    proc = tmp_path / "proc"
    (target / "run/tuned").mkdir(parents=True)
    (proc / "4242").mkdir(parents=True)
    (target / "run/tuned/tuned.pid").write_text("4242\n")
    t, p = TargetRoot(target), TargetRoot(proc)
    assert detect_power_managers([], t, p) == ["tuned"]
    (target / "run/tuned/tuned.pid").write_text("4343\n")  # stale pid file
    assert detect_power_managers([], t, p) == []
    assert detect_power_managers(["net.hadess.PowerProfiles", ":1.5"], t, p) == [
        "power-profiles-daemon"]
    wants = target / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "tlp.service").symlink_to("/lib/systemd/system/tlp.service")
    assert detect_power_managers([], t, p) == ["tlp"]
