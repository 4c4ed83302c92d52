"""The interface XML files in dbus/interfaces/ are the contract: the live daemon's
introspection must match them member by member, and every method must declare a policy."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
from dbus_fast import Variant

from oseprovd.bus.guard import policy_of
from tests.harness.busclient import call, connect
from tests.harness.components import REPO_ROOT

pytestmark = pytest.mark.root

NAME = "org.ose.Provisioning1"
INTERFACES = REPO_ROOT / "dbus" / "interfaces"


def shape(iface: ET.Element) -> dict[str, object]:
    """Members with their argument types and directions; names of args and docs ignored."""
    def args(member: ET.Element, default_dir: str) -> list[tuple[str, str]]:
        return [(a.get("direction", default_dir), a.get("type", "")) for a in member.iter("arg")]
    return {
        "methods": {m.get("name"): args(m, "in") for m in iface.iter("method")},
        "signals": {s.get("name"): args(s, "out") for s in iface.iter("signal")},
        "properties": {p.get("name"): (p.get("type"), p.get("access"))
                       for p in iface.iter("property")},
    }


def contract(name: str) -> dict[str, object]:
    root = ET.parse(INTERFACES / f"{name}.xml").getroot()
    (iface,) = [i for i in root.iter("interface") if i.get("name") == name]
    return shape(iface)


async def live(address: str, path: str, name: str) -> dict[str, object]:
    bus = await connect(address)
    try:
        (xml,) = await call(bus, NAME, path, "org.freedesktop.DBus.Introspectable",
                            "Introspect")
    finally:
        bus.disconnect()
    (iface,) = [i for i in ET.fromstring(xml).iter("interface") if i.get("name") == name]
    return shape(iface)


def test_every_shipped_interface_has_a_contract_file():
    assert sorted(p.stem for p in INTERFACES.glob("*.xml")) == [
        "org.ose.Discovery1", "org.ose.Job1", "org.ose.Manager1", "org.ose.Reset1",
        "org.ose.Snapshots1", "org.ose.Tuning1", "org.ose.Workflows1"]


def test_live_introspection_matches_the_xml(ose_daemon):
    d = ose_daemon.start(extra_args=["--test-interface"])

    async def make_job() -> str:
        bus = await connect(d.bus_address)
        try:
            (path,) = await call(bus, NAME, "/org/ose/Provisioning1/Test", "org.ose.Test1",
                                 "StartDemoJob", "a{sv}", [{"seconds": Variant("d", 0.0)}])
            return str(path)
        finally:
            bus.disconnect()

    job = asyncio.run(make_job())
    for path, name in (("/org/ose/Provisioning1", "org.ose.Manager1"), (job, "org.ose.Job1"),
                       ("/org/ose/Provisioning1/Tuning", "org.ose.Tuning1"),
                       ("/org/ose/Provisioning1/Snapshots", "org.ose.Snapshots1"),
                       ("/org/ose/Provisioning1/Discovery", "org.ose.Discovery1"),
                       ("/org/ose/Provisioning1/Reset", "org.ose.Reset1"),
                       ("/org/ose/Provisioning1/Workflows", "org.ose.Workflows1")):
        assert asyncio.run(live(d.bus_address, path, name)) == contract(name), name


def test_every_exported_method_declares_a_policy():
    """Walk every method of the real interface objects (the daemon also refuses to start
    otherwise; this names the offender in review) and every method of the contract."""
    from oseprovd.bus.discovery import DiscoveryInterface
    from oseprovd.bus.guard import check_declarations
    from oseprovd.bus.job import JobInterface
    from oseprovd.bus.manager import ManagerInterface
    from oseprovd.bus.reset import ResetInterface
    from oseprovd.bus.snapshots import SnapshotsInterface
    from oseprovd.bus.tuning import TuningInterface
    from oseprovd.bus.workflows import WorkflowsInterface
    from oseprovd.discovery import DiscoveryCache, DiscoveryEngine
    from oseprovd.store.jobs import JobRecord, JobState

    class Names:
        def on_vanished(self, callback):  # type: ignore[no-untyped-def]
            pass

    job = JobRecord(id=1, operation="x", state=JobState.QUEUED, caller_uid=0, created=0.0)
    objects = {
        "org.ose.Manager1": ManagerInterface(None, None, None, None, "/", []),  # type: ignore[arg-type]
        "org.ose.Job1": JobInterface(None, None, job),  # type: ignore[arg-type]
        "org.ose.Tuning1": TuningInterface(None, None, None, None, Names(), None),  # type: ignore[arg-type]
        "org.ose.Snapshots1": SnapshotsInterface(None, None, None, None),  # type: ignore[arg-type]
        "org.ose.Reset1": ResetInterface(None, None, None),  # type: ignore[arg-type]
        "org.ose.Workflows1": WorkflowsInterface(None, None, None, None, None),  # type: ignore[arg-type]
        "org.ose.Discovery1": DiscoveryInterface(
            None, DiscoveryCache(DiscoveryEngine()), None, None),  # type: ignore[arg-type]
    }
    check_declarations(list(objects.values()))
    for name, iface in objects.items():
        methods = contract(name)["methods"]
        assert isinstance(methods, dict)
        for member in methods:
            assert policy_of(iface, member) is not None, f"{name}.{member}"
