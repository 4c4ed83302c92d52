"""A full socket buffer must not cost the daemon its bus connection.

A real dbus-daemon is stopped (SIGSTOP) so it reads nothing; a 2 MiB signal then fills
the sender's socket and stays half written; a second message is sent at once. dbus-fast
alone takes the EAGAIN of that second write for a dead connection and disconnects (the
control case: it shows the test reproduces the bug); with oseprovd's guard the connection
stays, and once the bus runs again a listener receives both signals whole, in order.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.sysbus import PrivateSystemBus

pytestmark = pytest.mark.root  # the private system bus's policy lets root own names

REPO_ROOT = Path(__file__).resolve().parents[2]
BIG = 2 << 20


@pytest.fixture
def bus() -> Iterator[PrivateSystemBus]:
    with PrivateSystemBus() as b:
        yield b


def probe(bus: PrivateSystemBus, mode: str) -> dict[str, Any]:
    assert bus.proc is not None
    r = subprocess.run([sys.executable, "-m", "tests.bus.patient_writer_probe", bus.address,
                        str(bus.proc.pid), mode], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout.splitlines()[-1])
    return result


def test_unguarded_dbus_fast_drops_the_connection(bus: PrivateSystemBus) -> None:
    assert not probe(bus, "unguarded")["connected"], (
        "dbus-fast no longer drops it: oseprovd/bus/patient_writer.py may be obsolete")


def test_guarded_connection_waits_and_delivers_both(bus: PrivateSystemBus) -> None:
    result = probe(bus, "guarded")
    assert result["connected"]
    assert result["got"] == [["Big", BIG], ["Small", 1]]
