"""Units' runtime states from systemd's D-Bus API, merged into the unit files.

systemd cannot run here, so python-dbusmock's systemd template owns
org.freedesktop.systemd1 on a private system bus (with the host's real systemd1 bus
policy); the unit files come from a sandbox root. The template starts a unit on StartUnit;
ListUnits (which it lacks) is added to report what the template holds.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from oseprovd.bus.systemd_units import (
    SYSTEMD_MANAGER,
    SYSTEMD_NAME,
    SYSTEMD_PATH,
    SystemdUnitStates,
)
from oseprovd.discovery import DiscoveryEngine, SystemRoots
from oseprovd.discovery.collectors.services import ServicesInfo
from tests.harness import logs
from tests.harness.busclient import call, connect, wait_for_name_sync
from tests.harness.components import missing
from tests.harness.sysbus import PrivateSystemBus
from tests.unit.discovery.helpers import symlink, write

# The template imports gi (GLib): Debian's python3-gi is built for the interpreter the
# venv was made from; appended last, so the venv's own packages (dbus) still win.
RUN_MOCK = ("import runpy, sys; sys.path.append('/usr/lib/python3/dist-packages'); "
            "runpy.run_module('dbusmock', run_name='__main__', alter_sys=True)")
HOST_POLICY = Path("/usr/share/dbus-1/system.d/org.freedesktop.systemd1.conf")
MOCK_IFACE = "org.freedesktop.DBus.Mock"
# ListUnits from the template's own units: ActiveState as StartUnit/StopUnit left it.
LIST_UNITS = (
    "ret = [(n, 'mock ' + n, 'loaded', objects[p].props['org.freedesktop.systemd1.Unit']"
    "['ActiveState'], 'running' if objects[p].props['org.freedesktop.systemd1.Unit']"
    "['ActiveState'] == 'active' else 'dead', '', dbus.ObjectPath(p), dbus.UInt32(0), '',"
    " dbus.ObjectPath('/')) for n, p in sorted(self.units.items())]"
)


@pytest.fixture
def systemd_bus() -> Iterator[str]:
    policies = [HOST_POLICY] if HOST_POLICY.is_file() else []
    with PrivateSystemBus(extra_policy_files=policies) as bus:
        yield bus.address


def _start_mock(address: str) -> subprocess.Popen[bytes]:
    if not Path("/usr/lib/python3/dist-packages/gi").is_dir():
        missing("python3-gi (apt) is needed by dbusmock's systemd template")
    log_path = Path(tempfile.mkdtemp(prefix="ose-mocksystemd-")) / "dbusmock.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN_MOCK, "--system", "--template", "systemd"],
            env={"DBUS_SYSTEM_BUS_ADDRESS": address, "PATH": "/usr/bin:/bin",
                 "LANG": "C.UTF-8"}, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    logs.register("dbusmock systemd", log_path)
    return proc


def _sandbox(base: Path) -> SystemRoots:
    for sub in ("proc", "sys", "dev", "run"):
        (base / sub).mkdir()
    write(base, "etc/systemd/system/web.service",
          "[Unit]\nDescription=Web\n[Service]\nExecStart=/usr/bin/web\n"
          "[Install]\nWantedBy=multi-user.target\n")
    symlink(base, "etc/systemd/system/multi-user.target.wants/web.service",
            "/etc/systemd/system/web.service")
    write(base, "lib/systemd/system/idle.service",
          "[Service]\nExecStart=/usr/bin/idle\n[Install]\nWantedBy=multi-user.target\n")
    write(base, "lib/systemd/system/files-only.service", "[Service]\nExecStart=/bin/true\n")
    return SystemRoots.sandbox(base)


async def _services(roots: SystemRoots, address: str) -> ServicesInfo:
    bus = await connect(address)
    try:
        engine = DiscoveryEngine(roots, unit_states=SystemdUnitStates(
            bus, asyncio.get_running_loop()))
        outcome, section = await engine.collect_one("services")
        assert outcome.status == "ok", outcome.error
        assert isinstance(section, ServicesInfo)
        return section
    finally:
        bus.disconnect()


async def _prepare_mock(address: str) -> None:
    bus = await connect(address)
    try:
        await call(bus, SYSTEMD_NAME, SYSTEMD_PATH, MOCK_IFACE, "AddMethod", "sssss",
                   [SYSTEMD_MANAGER, "ListUnits", "", "a(ssssssouso)", LIST_UNITS])
        for unit in ("web.service", "idle.service", "run-generated.mount"):
            await call(bus, SYSTEMD_NAME, SYSTEMD_PATH, MOCK_IFACE, "AddMockUnit", "s", [unit])
        for unit in ("web.service", "run-generated.mount"):
            await call(bus, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER, "StartUnit", "ss",
                       [unit, "replace"])
    finally:
        bus.disconnect()


def test_states_from_systemd_merge_into_unit_files(systemd_bus: str, tmp_path: Path) -> None:
    roots = _sandbox(tmp_path)
    proc = _start_mock(systemd_bus)
    try:
        wait_for_name_sync(systemd_bus, SYSTEMD_NAME, 15, pid=proc.pid)
        asyncio.run(_prepare_mock(systemd_bus))
        info = asyncio.run(_services(roots, systemd_bus))
    finally:
        proc.terminate()
        proc.wait(5)
    assert info.systemd_running is True and info.systemd_error is None
    units = {u.name: u for u in info.systemd_units}
    assert (units["web.service"].state, units["web.service"].active_state,
            units["web.service"].sub_state, units["web.service"].load_state) == \
        ("enabled", "active", "running", "loaded")
    assert (units["idle.service"].state, units["idle.service"].active_state,
            units["idle.service"].sub_state) == ("disabled", "inactive", "dead")
    assert units["files-only.service"].active_state is None  # systemd has not loaded it
    assert [(u.name, u.active_state) for u in info.runtime_only_units] == \
        [("run-generated.mount", "active")]


def test_no_systemd_on_the_bus_is_an_answer(systemd_bus: str, tmp_path: Path) -> None:
    info = asyncio.run(_services(_sandbox(tmp_path), systemd_bus))
    assert info.systemd_running is False and info.systemd_error is None
    assert {u.name for u in info.systemd_units} == {"web.service", "idle.service",
                                                    "files-only.service"}
    assert all(u.active_state is None for u in info.systemd_units)


def test_without_a_source_systemd_is_not_asked(tmp_path: Path) -> None:
    info = DiscoveryEngine(_sandbox(tmp_path)).collect_sync(["services"]).services
    assert info is not None and info.systemd_running is None
