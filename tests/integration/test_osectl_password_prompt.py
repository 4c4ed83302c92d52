"""osectl asks for the admin's password on the terminal, as systemctl does.

A user who is not root and has no polkit agent runs `osectl audit` (auth_admin) on a
terminal: osectl starts pkttyagent for itself and polkit asks for an administrator's
password there. Real polkitd (its admin is oseadmin here), real pkttyagent and its
setuid PAM helper checking /etc/shadow, a real pseudo-terminal. The truth is the
daemon's audit table: who was allowed, after which decision.
"""

from __future__ import annotations

import os
import pty
import secrets
import select
import signal
import sqlite3
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.components import UNSHARE, require
from tests.harness.daemon import DaemonFactory, DaemonProcess
from tests.harness.polkit import DEFAULT_RULES, PolkitDaemon
from tests.harness.sysbus import PrivateSystemBus
from tests.harness.users import TestUsers

pytestmark = pytest.mark.root

REPO_ROOT = Path(__file__).resolve().parents[2]
NS_WRAPPER = REPO_ROOT / "tests" / "harness" / "system_bus_ns.py"
# The harness's rules, and oseadmin as the identity polkit asks an admin password of.
RULES = DEFAULT_RULES + """
polkit.addAdminRule(function(action, subject) { return ["unix-user:oseadmin"]; });
"""


@dataclass
class Rig:
    address: str
    socket: str
    daemon: DaemonProcess
    password: str
    users: TestUsers


def _shadow_hash(user: str) -> str:
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return fields[1]
    raise LookupError(user)


@pytest.fixture
def rig(ose_daemon: DaemonFactory, test_users: TestUsers) -> Iterator[Rig]:
    require("pkttyagent", "osectl starts the polkit text agent")
    require("/usr/lib/polkit-1/polkit-agent-helper-1", "polkit checks the password with it")
    require("chpasswd", "the test gives oseadmin a password")
    password = secrets.token_urlsafe(12)
    before = _shadow_hash(test_users.admin.name)
    subprocess.run(["chpasswd"], input=f"{test_users.admin.name}:{password}\n", text=True,
                   check=True)
    try:
        with PrivateSystemBus() as bus, PolkitDaemon(bus.address, rules_js=RULES):
            daemon = ose_daemon.start(bus_address=bus.address)
            socket = bus.address.split("path=", 1)[1].split(",", 1)[0]
            yield Rig(bus.address, socket, daemon, password, test_users)
    finally:
        # The account goes back to exactly what it was (locked, no password).
        subprocess.run(["usermod", "-p", before, "--", test_users.admin.name], check=True)


@dataclass
class Session:
    output: str
    status: int
    prompts: int


def on_terminal(rig: Rig, args: list[str], answers: list[str],
                timeout: float = 60) -> Session:
    """osectl ARGS as oseuser on a new pseudo-terminal (its controlling tty), answering
    each password prompt with the next of `answers`."""
    argv = [require(UNSHARE, "a private mount namespace"), "--mount", "--propagation",
            "private", "--", sys.executable, str(NS_WRAPPER), rig.socket,
            rig.users.user.name, "--", sys.executable, "-m", "osectl.main",
            "--address", rig.address, *args]
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "TERM": "dumb",
           "HOME": "/nonexistent", "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling tty is the pty
        try:
            os.chdir(REPO_ROOT)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    out, prompts, left = b"", 0, list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: every process on the terminal has gone
                break
            if not chunk:
                break
            out += chunk
            if out.count(b"Password:") > prompts:
                prompts += 1
                # Type only once the agent has turned echo off: it does so after printing
                # the prompt, flushing what was typed before in the same call (TCSAFLUSH).
                _wait_echo_off(fd, deadline)
                os.write(fd, (left.pop(0) if left else "").encode() + b"\n")
        else:
            os.kill(pid, signal.SIGKILL)
        _, wait_status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return Session(out.decode(errors="replace"), os.waitstatus_to_exitcode(wait_status),
                   prompts)


def _wait_echo_off(fd: int, deadline: float) -> None:
    # On Linux the master side reports the terminal's (the slave's) settings.
    while termios.tcgetattr(fd)[3] & termios.ECHO:
        assert time.monotonic() < deadline, "the agent never turned echo off"
        time.sleep(0.01)


def audit_rows(d: DaemonProcess, uid: int) -> list[tuple[str, str]]:
    conn = sqlite3.connect(d.state_dir / "oseprovd.db")
    try:
        return conn.execute(
            "SELECT decision, outcome FROM audit WHERE uid = ? AND method LIKE ? ORDER BY id",
            (uid, "%GetAuditLog")).fetchall()
    finally:
        conn.close()


def agents_of(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if ((entry / "comm").read_text().strip() == "pkttyagent"
                    and entry.stat().st_uid == uid):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_the_admin_password_is_asked_on_the_terminal(rig: Rig) -> None:
    uid = rig.users.user.uid
    s = on_terminal(rig, ["audit"], [rig.password])
    assert s.status == 0, s.output
    assert s.prompts == 1 and "oseadmin" in s.output, s.output
    assert rig.password not in s.output  # typed with echo off
    # Refused without an agent, then allowed once polkit had the admin's password.
    assert audit_rows(rig.daemon, uid) == [
        ("challenge", "org.freedesktop.DBus.Error.AccessDenied"), ("allowed", "ok")]
    assert agents_of(uid) == []  # the agent ended with osectl


def test_a_wrong_password_is_refused(rig: Rig) -> None:
    uid = rig.users.user.uid
    s = on_terminal(rig, ["audit"], ["not-" + rig.password] * 5)
    assert s.status == 4, s.output
    assert s.prompts >= 1 and "not authorized" in s.output, s.output
    decisions = [d for d, _ in audit_rows(rig.daemon, uid)]
    assert decisions and "allowed" not in decisions, decisions
    assert agents_of(uid) == []


def test_no_ask_password_never_prompts(rig: Rig) -> None:
    s = on_terminal(rig, ["--no-ask-password", "audit"], [rig.password])
    assert s.status == 4 and s.prompts == 0, s.output
    assert [d for d, _ in audit_rows(rig.daemon, rig.users.user.uid)] == ["challenge"]


def test_a_public_read_starts_no_agent(rig: Rig) -> None:
    s = on_terminal(rig, ["--json", "status"], [])
    assert s.status == 0 and s.prompts == 0, s.output
    assert audit_rows(rig.daemon, rig.users.user.uid) == []
