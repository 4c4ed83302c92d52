"""python-dbusmock's polkitd template on a private system bus, for the failure modes a
client of polkit must survive and that the real polkitd won't produce on demand:
  absent   nobody owns org.freedesktop.PolicyKit1 (a bus with no polkit at all)
  hanging  CheckAuthorization is accepted but never answered (template's SimulateHang)
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.harness import logs
from tests.harness.busclient import call, connect, run_sync, wait_for_name_sync
from tests.harness.process import ManagedProcess
from tests.harness.sysbus import PrivateSystemBus, allow_user_to_own

POLKIT_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
MOCK_IFACE = "org.freedesktop.DBus.Mock"


def mock_polkit_bus() -> PrivateSystemBus:
    """A private system bus (project policy included) on which we (root, usually) may own
    polkit's name: the shipped polkit bus policy reserves it to the polkitd user."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    return PrivateSystemBus(extra_policy_xml=[allow_user_to_own(POLKIT_NAME, me)])


class MockPolkit(ManagedProcess):
    """`with MockPolkit(bus.address, hang=True) as pk:`; pk.call_mock("SetAllowed", ...)."""

    def __init__(self, bus_address: str, *, hang: bool = False, allowed: tuple[str, ...] = (),
                 startup_timeout: float = 15.0) -> None:
        self.bus_address = bus_address
        self._hang = hang
        self._allowed = allowed
        self._timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def start(self) -> MockPolkit:
        self.dir = Path(tempfile.mkdtemp(prefix="ose-mockpolkit-"))
        self.log_path = self.dir / "dbusmock.log"
        env = {"DBUS_SYSTEM_BUS_ADDRESS": self.bus_address, "PATH": "/usr/bin:/bin",
               "LANG": "C.UTF-8"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dbusmock", "--system", "--template", "polkitd"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        logs.register("dbusmock polkitd", self.log_path)
        try:
            wait_for_name_sync(self.bus_address, POLKIT_NAME, self._timeout,
                               pid=self.proc.pid, died=self._died)
            if self._allowed:
                self.call_mock("SetAllowed", "as", list(self._allowed))
            if self._hang:
                self.call_mock("SimulateHang", "b", True)
        except BaseException:
            self.stop()
            raise
        return self

    def _died(self) -> str | None:
        assert self.proc is not None and self.log_path is not None
        if self.proc.poll() is None:
            return None
        return f"dbusmock exited with {self.proc.returncode}:\n{self.log_path.read_text()}"

    def call_mock(self, member: str, signature: str = "", *body: object) -> list[object]:
        """Call the template's control interface (SetAllowed, SimulateHang,
        ReleaseHangingCalls, HaveHangingCalls, AllowUnknown, SetDelay)."""

        async def go() -> list[object]:
            bus = await connect(self.bus_address)
            try:
                return await call(bus, POLKIT_NAME, POLKIT_PATH, MOCK_IFACE, member,
                                  signature, body, timeout=10)
            finally:
                bus.disconnect()

        return run_sync(go)



@dataclass
class PolkitScenario:
    bus: PrivateSystemBus
    mock: MockPolkit | None  # None: polkit absent

    @property
    def address(self) -> str:
        return self.bus.address
