"""Fixtures over the real-component harness (tests/harness, see docs/test-harness.md).

  system_bus        session   PrivateSystemBus with the project's bus policy
  test_users        session   TestUsers (admin=oseadmin in osetest-admin, user=oseuser)
  polkitd           session   the real polkitd on system_bus, with our policy and rules
  ose_daemon        function  DaemonFactory: ose_daemon.start(**kw) -> ready DaemonProcess
  mock_polkit_absent function PolkitScenario: a private bus where polkit is absent
  mock_polkit_hang  function  PolkitScenario: dbusmock polkit that never answers
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import logs
from tests.harness.components import require_root
from tests.harness.daemon import DaemonProcess
from tests.harness.mockpolkit import MockPolkit, mock_polkit_bus
from tests.harness.polkit import PolkitDaemon
from tests.harness.sysbus import PrivateSystemBus
from tests.harness.users import TestUsers, ensure_test_users

LOG_MARKS = pytest.StashKey[dict[Path, int]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture of this test starts: where each running component's log ends.
    item.stash[LOG_MARKS] = logs.marks()
    if item.get_closest_marker("root") is not None:
        require_root(f"{item.nodeid} is marked root")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed:
        for title, text in logs.since(item.stash.get(LOG_MARKS, {})):
            report.sections.append((title, text))
    return report


@pytest.fixture(scope="session")
def system_bus() -> Iterator[PrivateSystemBus]:
    with PrivateSystemBus() as bus:
        yield bus


@pytest.fixture(scope="session")
def test_users() -> TestUsers:
    return ensure_test_users()


@pytest.fixture(scope="session")
def polkitd(system_bus: PrivateSystemBus, test_users: TestUsers) -> Iterator[PolkitDaemon]:
    with PolkitDaemon(system_bus.address) as daemon:
        yield daemon


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        return [m for line in f if (m := line.split()[4]).startswith(prefix)]


class DaemonFactory:
    """The `ose_daemon` fixture: `ose_daemon.start(**kw)` (or `ose_daemon(**kw)`)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self.made: list[tuple[DaemonProcess, Path]] = []

    def start(
        self,
        bus_address: str | None = None,
        extra_args: Sequence[str] = (),
        *,
        module: str = "oseprovd",
        start: bool = True,
        ready_timeout: float = 15.0,
    ) -> DaemonProcess:
        """A DaemonProcess with a fresh base dir (0755) holding state/ (0700), root/ (0755)
        and the log; started and ready unless start=False. Without bus_address it runs
        on `system_bus` with the real `polkitd`."""
        if bus_address is None:
            self._request.getfixturevalue("polkitd")
            bus_address = self._request.getfixturevalue("system_bus").address
        base = Path(tempfile.mkdtemp(prefix="ose-daemon-"))
        base.chmod(0o755)
        (base / "state").mkdir(mode=0o700)
        (base / "root").mkdir(mode=0o755)
        daemon = DaemonProcess(bus_address, base / "state", base / "root", extra_args,
                               log_path=base / f"{module}.log", module=module,
                               ready_timeout=ready_timeout)
        self.made.append((daemon, base))
        return daemon.start() if start else daemon

    __call__ = start

    def close(self) -> None:
        """Kill every daemon and remove its dirs (a base with a mount under it is kept)."""
        leftovers = []
        for daemon, base in self.made:
            daemon.close()
            if mounts := _mounts_under(base):
                leftovers += mounts
            else:
                shutil.rmtree(base, ignore_errors=True)
        if leftovers:
            pytest.fail(f"mounts left under a daemon's dirs: {leftovers}", pytrace=False)


@pytest.fixture
def ose_daemon(request: pytest.FixtureRequest) -> Iterator[DaemonFactory]:
    """Factory of daemons under test, all killed and cleaned up at teardown."""
    factory = DaemonFactory(request)
    yield factory
    factory.close()


@dataclass
class PolkitScenario:
    bus: PrivateSystemBus
    mock: MockPolkit | None  # None: polkit absent

    @property
    def address(self) -> str:
        return self.bus.address


@pytest.fixture
def mock_polkit_absent() -> Iterator[PolkitScenario]:
    """A private system bus (project policy) on which nobody provides polkit."""
    with PrivateSystemBus() as bus:
        yield PolkitScenario(bus, None)


@pytest.fixture
def mock_polkit_hang() -> Iterator[PolkitScenario]:
    """A private system bus whose polkit (dbusmock) accepts CheckAuthorization and never
    answers. scenario.mock.call_mock("ReleaseHangingCalls") answers the held calls."""
    with mock_polkit_bus() as bus, MockPolkit(bus.address, hang=True) as mock:
        yield PolkitScenario(bus, mock)


