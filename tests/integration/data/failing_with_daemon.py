"""Run only by test_harness.py in a child pytest: fails on purpose, so the report must
carry the logs of the components that were running."""

import pytest

from tests.harness.daemon import DaemonFactory
from tests.harness.mockpolkit import PolkitScenario


@pytest.mark.root
def test_fails_with_daemon_running(
    ose_daemon: DaemonFactory, mock_polkit_absent: PolkitScenario
) -> None:
    ose_daemon.start(mock_polkit_absent.address, module="tests.harness.stub_oseprovd")
    raise AssertionError("deliberate failure")
