"""Run by systemd, the daemon logs to the journal with structured fields. The test plays
journald: in a private mount namespace the daemon's /run/systemd/journal/socket is a
datagram socket the test reads, in journald's native protocol."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

import pytest

from oseprovd.bus.guard import MSG_AUDIT
from oseprovd.log import MSG_READY
from tests.harness.busclient import wait_for_name_sync
from tests.harness.components import REPO_ROOT, require
from tests.integration.test_daemon import audit_as_user

pytestmark = pytest.mark.root

WRAPPER = """
set -e
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/journal
mount --bind "$OSE_FAKE_JOURNAL" /run/systemd/journal
exec "$@"
"""


def parse(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: KEY=value lines, or KEY\\n<le64 size><bytes>\\n."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value.decode("utf-8", "replace")
            i = nl + 1
        else:
            size = int.from_bytes(datagram[nl + 1:nl + 9], "little")
            fields[line.decode()] = datagram[nl + 9:nl + 9 + size].decode("utf-8", "replace")
            i = nl + 9 + size + 1
    return fields


def test_structured_journal_fields(system_bus, polkitd, test_users, tmp_path):
    require("unshare", "a private mount namespace for the fake journald socket")
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    state = tmp_path / "state"
    root = tmp_path / "root"
    root.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(journal_dir / "socket"))
        sock.settimeout(0.2)
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": system_bus.address,
               "JOURNAL_STREAM": "8:1", "OSE_FAKE_JOURNAL": str(journal_dir)}
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", WRAPPER, "sh",
             sys.executable, "-m", "oseprovd", "--bus", system_bus.address,
             "--state-dir", str(state), "--root", str(root)],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_for_name_sync(system_bus.address, "org.ose.Provisioning1", 15)
            from tests.harness.users import call_as

            _, outcome = call_as(test_users.user, audit_as_user, system_bus.address)
            assert outcome == "org.freedesktop.DBus.Error.AccessDenied"
            records: list[dict[str, str]] = []
            deadline = time.monotonic() + 10
            while not any(r.get("MESSAGE_ID") == MSG_AUDIT for r in records):
                assert time.monotonic() < deadline, records
                with contextlib.suppress(TimeoutError):
                    records.append(parse(sock.recv(1 << 20)))
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert b"Traceback" not in out
    ready = [r for r in records if r.get("MESSAGE_ID") == MSG_READY]
    assert ready and ready[0]["SYSLOG_IDENTIFIER"] == "oseprovd"
    (audit,) = [r for r in records if r.get("MESSAGE_ID") == MSG_AUDIT]
    assert audit["OSE_UID"] == str(test_users.user.uid)
    assert audit["OSE_ACTION"] == "org.ose.audit.read"
    assert audit["OSE_DECISION"] == "challenge"
    assert audit["OSE_OUTCOME"] == "org.freedesktop.DBus.Error.AccessDenied"
    assert audit["PRIORITY"] == "6"
