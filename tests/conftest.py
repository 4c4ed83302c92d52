"""Fixtures over the real-component harness (tests/harness, see docs/test-harness.md).

  system_bus        session   PrivateSystemBus with the project's bus policy
  test_users        session   TestUsers (admin=oseadmin in osetest-admin, user=oseuser)
  polkitd           session   the real polkitd on system_bus, with our policy and rules
  ose_daemon        function  DaemonFactory: ose_daemon.start(**kw) -> ready DaemonProcess
  mock_polkit_absent function PolkitScenario: a private bus where polkit is absent
  mock_polkit_hang  function  PolkitScenario: dbusmock polkit that never answers
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.harness import logs
from tests.harness.components import require_root
from tests.harness.daemon import DaemonFactory
from tests.harness.mockpolkit import MockPolkit, PolkitScenario, mock_polkit_bus
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


@pytest.fixture
def ose_daemon(request: pytest.FixtureRequest) -> Iterator[DaemonFactory]:
    """Factory of daemons under test, all killed and cleaned up at teardown."""
    factory = DaemonFactory(request)
    yield factory
    factory.close()


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


