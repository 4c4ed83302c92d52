"""The test harness itself, proven against ground truth: the bus's own answers about who
owns what, /etc/passwd and /etc/group, /proc, the real polkitd's decisions."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from dbus_fast import Message, Variant

from tests.harness import busclient as bc
from tests.harness.components import POLKITD, REPO_ROOT, require
from tests.harness.daemon import DaemonFactory, DaemonStartError
from tests.harness.mockpolkit import PolkitScenario
from tests.harness.polkit import POLKIT_NAME, PolkitDaemon
from tests.harness.sysbus import PrivateSystemBus
from tests.harness.users import (
    ADMIN_GROUP,
    InaccessiblePath,
    RemoteError,
    TestUsers,
    acall_as,
    call_as,
    ensure_test_users,
    run_as,
)

OSE_NAME = "org.ose.Provisioning1"
AUTHORITY = (POLKIT_NAME, "/org/freedesktop/PolicyKit1/Authority",
             "org.freedesktop.PolicyKit1.Authority")
STUB = "tests.harness.stub_oseprovd"
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"


# --- components ---------------------------------------------------------------------

def test_require_finds_real_tools() -> None:
    assert require("dbus-daemon", "test") .endswith("/dbus-daemon")
    assert require(POLKITD, "test") == POLKITD


def test_require_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require("no-such-tool-ose", "test")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require("/nonexistent/tool", "test")


# --- private system bus ------------------------------------------------------------

async def request_name(address: str, name: str) -> int:
    bus = await bc.connect(address)
    try:
        return int(await bc.dbus_call(bus, "RequestName", "su", name, 4))  # DO_NOT_QUEUE
    finally:
        bus.disconnect()


@pytest.mark.root
def test_bus_socket_is_usable_by_everyone(system_bus: PrivateSystemBus) -> None:
    assert system_bus.socket_path.stat().st_mode & 0o777 == 0o666
    assert system_bus.socket_path.parent.stat().st_mode & 0o777 == 0o755


@pytest.mark.root
@pytest.mark.parametrize("who", ["oseuser", "oseadmin"])
def test_unprivileged_cannot_own_project_name(
    system_bus: PrivateSystemBus, test_users: TestUsers, who: str
) -> None:
    with pytest.raises(bc.BusError) as err:
        call_as(who, request_name, system_bus.address, OSE_NAME)
    assert err.value.name == ACCESS_DENIED


@pytest.mark.root
def test_root_can_own_project_name_but_not_others(system_bus: PrivateSystemBus) -> None:
    assert bc.run_sync(lambda: request_name(system_bus.address, OSE_NAME)) == 1  # primary
    # The default policy still applies to root: it owns only what a policy file grants.
    with pytest.raises(bc.BusError) as err:
        bc.run_sync(lambda: request_name(system_bus.address, "org.ose.NotInPolicy"))
    assert err.value.name == ACCESS_DENIED


async def ping(address: str, destination: str) -> str:
    bus = await bc.connect(address)
    try:
        out = await bc.call(bus, destination, "/", "org.ose.Test", "Ping", timeout=10)
        return str(out[0])
    finally:
        bus.disconnect()


@pytest.mark.root
def test_unprivileged_can_call_the_owner_but_nobody_else(
    system_bus: PrivateSystemBus, test_users: TestUsers
) -> None:
    async def main() -> None:
        owner = await bc.connect(system_bus.address)
        bystander = await bc.connect(system_bus.address)  # owns no name: default deny
        caller_uids: list[int] = []
        tasks: set[asyncio.Task[None]] = set()

        async def answer(msg: Message) -> None:
            # The bus, not the client, says who called (asked while the caller waits).
            caller_uids.append(await bc.dbus_call(owner, "GetConnectionUnixUser", "s", msg.sender))
            owner.send(Message.new_method_return(msg, "s", ["pong"]))

        def serve(msg: Message) -> bool:
            if msg.member != "Ping":
                return False
            task = asyncio.get_running_loop().create_task(answer(msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return True  # handled; the task replies

        try:
            for b in (owner, bystander):
                b.add_message_handler(serve)
            assert await bc.dbus_call(owner, "RequestName", "su", OSE_NAME, 4) == 1
            assert await acall_as(test_users.user, ping, system_bus.address, OSE_NAME) == "pong"
            assert caller_uids == [test_users.user.uid]
            with pytest.raises(bc.BusError) as err:
                await acall_as(test_users.user, ping, system_bus.address, bystander.unique_name)
            assert err.value.name == ACCESS_DENIED
            assert len(caller_uids) == 1  # the denied call never reached it
        finally:
            owner.disconnect()
            bystander.disconnect()

    asyncio.run(main())


# --- users -------------------------------------------------------------------------

@pytest.mark.root
def test_test_users_in_system_databases(test_users: TestUsers) -> None:
    assert ensure_test_users() == test_users  # idempotent
    admin_members = grp.getgrnam(ADMIN_GROUP).gr_mem
    assert "oseadmin" in admin_members and "oseuser" not in admin_members
    for u in (test_users.admin, test_users.user):
        assert pwd.getpwnam(u.name).pw_uid == u.uid != 0
    ids = subprocess.run(["id", "-Gn", "oseadmin"], capture_output=True, text=True, check=True)
    assert ADMIN_GROUP in ids.stdout.split()


@pytest.mark.root
def test_run_as_switches_uid_gid_and_groups(test_users: TestUsers) -> None:
    for u in (test_users.admin, test_users.user):
        done = run_as(u, ["id", "-u"])
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) == u.uid
        groups = {int(g) for g in run_as(u, ["id", "-G"]).stdout.split()}
        assert groups == set(u.groups)
    # The venv's interpreter (Debian's python3) runs project code as the user.
    done = run_as(test_users.user, [sys.executable, "-c",
                                    "import os, tests.harness; print(os.getuid(), os.getgid())"])
    assert done.stdout.split() == [str(test_users.user.uid), str(test_users.user.gid)]


@pytest.mark.root
def test_run_as_names_the_unreachable_directory(test_users: TestUsers) -> None:
    with tempfile.TemporaryDirectory() as top:  # /tmp/x: 0700 by default
        Path(top, "checkout").mkdir()
        with pytest.raises(InaccessiblePath, match=f"no access to {top}$|no access to {top}\\."):
            run_as(test_users.user, ["true"], cwd=Path(top, "checkout"))
        Path(top).chmod(0o755)  # control: reachable now
        assert run_as(test_users.user, ["true"], cwd=Path(top, "checkout")).returncode == 0


@pytest.mark.root
def test_call_as_runs_as_the_user(test_users: TestUsers) -> None:
    u = test_users.admin

    def identity() -> tuple[int, int, int, int, list[int], bool]:
        return (os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups()),
                os.access("/etc/shadow", os.R_OK))

    assert call_as(u, identity) == (u.uid, u.uid, u.gid, u.gid, sorted(u.groups), False)

    def fail() -> None:
        raise ValueError("from the child")

    with pytest.raises(ValueError, match="from the child"):
        call_as(u, fail)

    class Unpicklable(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(a)

    def fail_oddly() -> None:
        raise Unpicklable(1, 2)

    with pytest.raises(RemoteError, match="Unpicklable"):
        call_as(u, fail_oddly)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        call_as(u, time.sleep, 30, timeout=0.3)
    assert time.monotonic() - started < 5


# --- real polkitd ------------------------------------------------------------------

async def check_authorization(address: str, action: str) -> tuple[bool, bool, dict[str, str]]:
    """CheckAuthorization for the calling connection itself (no interaction allowed)."""
    bus = await bc.connect(address)
    try:
        subject = ["system-bus-name", {"name": Variant("s", bus.unique_name)}]
        out = await bc.call(bus, *AUTHORITY, "CheckAuthorization", "(sa{sv})sa{ss}us",
                            [subject, action, {}, 0, ""], timeout=10)
        authorized, challenge, details = out[0]
        return bool(authorized), bool(challenge), dict(details)
    finally:
        bus.disconnect()


def check_as(who: str, address: str, action: str) -> tuple[bool, bool, dict[str, str]]:
    if who == "root":
        result: tuple[bool, bool, dict[str, str]] = bc.run_sync(
            lambda: check_authorization(address, action))
        return result
    answer: tuple[bool, bool, dict[str, str]] = call_as(who, check_authorization, address, action)
    return answer


@pytest.mark.root
def test_polkitd_is_real_and_confined(polkitd: PolkitDaemon) -> None:
    status = Path(f"/proc/{polkitd.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    # polkitd drops from root to its own user, which must read our temp dirs.
    assert set(uid_line.split()[1:]) == {str(pwd.getpwnam("polkitd").pw_uid)}
    assert Path(f"/proc/{polkitd.pid}/exe").resolve() == Path(POLKITD)
    assert os.readlink(f"/proc/{polkitd.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    theirs = Path(f"/proc/{polkitd.pid}/mountinfo").read_text()
    assert " /usr/share/polkit-1/actions " in theirs and " /etc/polkit-1/rules.d " in theirs
    ours = Path("/proc/self/mountinfo").read_text()
    assert " /usr/share/polkit-1/actions " not in ours
    assert " /etc/polkit-1/rules.d " not in ours
    # polkitd's /usr/share/polkit-1/actions is another directory, holding our policy.
    theirs_dir = Path(f"/proc/{polkitd.pid}/root/usr/share/polkit-1/actions")
    assert (theirs_dir / "org.ose.provisioning.policy").is_file()
    assert theirs_dir.stat().st_ino != Path("/usr/share/polkit-1/actions").stat().st_ino


@pytest.mark.root
@pytest.mark.parametrize(("who", "expected"), [
    ("root", (True, False)),      # polkit authorizes uid 0 before any rule
    ("oseadmin", (True, False)),  # our rule: group osetest-admin gets org.ose.*
    ("oseuser", (False, True)),   # auth_admin, no agent: a challenge, not a yes
])
def test_real_polkitd_decides(
    polkitd: PolkitDaemon, system_bus: PrivateSystemBus, test_users: TestUsers,
    who: str, expected: tuple[bool, bool],
) -> None:
    authorized, challenge, _ = check_as(who, system_bus.address, "org.ose.audit.read")
    assert (authorized, challenge) == expected


@pytest.mark.root
def test_rule_grants_only_ose_actions(
    polkitd: PolkitDaemon, system_bus: PrivateSystemBus, test_users: TestUsers
) -> None:
    # org.freedesktop.policykit.exec ships with polkitd itself (auth_admin): not ours.
    authorized, challenge, _ = check_as("oseadmin", system_bus.address,
                                        "org.freedesktop.policykit.exec")
    assert (authorized, challenge) == (False, True)


@pytest.mark.root
@pytest.mark.parametrize("who", ["root", "oseadmin"])
def test_unknown_action_is_an_error(
    polkitd: PolkitDaemon, system_bus: PrivateSystemBus, test_users: TestUsers, who: str
) -> None:
    # Recorded behaviour of polkit 122: an unregistered action id is an error reply,
    # even for root and even where a rule would match its prefix.
    with pytest.raises(bc.BusError) as err:
        check_as(who, system_bus.address, "org.ose.no-such-action")
    assert err.value.name == "org.freedesktop.PolicyKit1.Error.Failed"
    assert "not registered" in err.value.text


@pytest.mark.root
def test_polkitd_with_broken_rules_is_refused() -> None:
    # polkitd itself would run on without them, denying every grant silently.
    with PrivateSystemBus() as bus, pytest.raises(RuntimeError, match="Error compiling script"):
        PolkitDaemon(bus.address, rules_js="polkit.addRule(function( {").start()


# --- mock polkit edge cases --------------------------------------------------------

def test_mock_polkit_absent(mock_polkit_absent: PolkitScenario) -> None:
    async def probe() -> bool:
        bus = await bc.connect(mock_polkit_absent.address)
        try:
            return bool(await bc.dbus_call(bus, "NameHasOwner", "s", POLKIT_NAME))
        finally:
            bus.disconnect()

    assert bc.run_sync(probe) is False
    started = time.monotonic()
    with pytest.raises(bc.BusError) as err:
        bc.run_sync(lambda: check_authorization(mock_polkit_absent.address, "org.ose.audit.read"))
    assert err.value.name == "org.freedesktop.DBus.Error.ServiceUnknown"
    assert time.monotonic() - started < 2  # no activation: fails at once


def test_mock_polkit_hang_really_hangs(mock_polkit_hang: PolkitScenario) -> None:
    address = mock_polkit_hang.address
    with pytest.raises(TimeoutError):
        bc.run_sync(lambda: asyncio.wait_for(check_authorization(address, "org.ose.audit.read"),
                                             0.5))
    mock = mock_polkit_hang.mock
    assert mock is not None
    assert mock.call_mock("HaveHangingCalls") == [True]
    # Control: the same client gets an answer once the mock stops hanging.
    mock.call_mock("SimulateHang", "b", False)
    assert bc.run_sync(lambda: check_authorization(address, "org.ose.audit.read"))[:2] == \
        (False, False)


# --- daemon process (a stand-in honouring the contract) ----------------------------

async def _owner(address: str) -> int | None:
    bus = await bc.connect(address)
    try:
        return await bc.owner_pid(bus, OSE_NAME)
    finally:
        bus.disconnect()


@pytest.mark.root
def test_daemon_process_lifecycle(
    ose_daemon: DaemonFactory, mock_polkit_absent: PolkitScenario
) -> None:
    address = mock_polkit_absent.address
    d = ose_daemon.start(address, module=STUB)
    assert bc.run_sync(lambda: _owner(address)) == d.pid  # ready means it owns the name
    assert (d.state_dir / "starts").read_text() == "1"
    assert d.state_dir.stat().st_mode & 0o777 == 0o700
    assert f"root={d.root}" in d.log_text()
    assert d.stop() == 0
    assert bc.run_sync(lambda: _owner(address)) is None
    first = d.pid
    d.restart()
    assert d.pid != first and (d.state_dir / "starts").read_text() == "2"
    assert bc.run_sync(lambda: _owner(address)) == d.pid
    assert d.kill() == -signal.SIGKILL
    assert "SIGTERM, exiting" in d.log_text()  # from the first stop


@pytest.mark.root
def test_daemon_exiting_early_fails_with_its_log(
    ose_daemon: DaemonFactory, mock_polkit_absent: PolkitScenario
) -> None:
    with pytest.raises(DaemonStartError, match=r"(?s)status 3.*failing on purpose"):
        ose_daemon.start(mock_polkit_absent.address, ["--stub-exit", "3"], module=STUB)


@pytest.mark.root
def test_daemon_stop_timeout_kills(
    ose_daemon: DaemonFactory, mock_polkit_absent: PolkitScenario
) -> None:
    d = ose_daemon.start(mock_polkit_absent.address, ["--stub-ignore-term"], module=STUB)
    with pytest.raises(TimeoutError):
        d.stop(timeout=0.5)
    assert not d.running and d.returncode == -signal.SIGKILL


@pytest.mark.root
def test_failed_test_report_carries_component_logs() -> None:
    """Run a deliberately failing test in a child pytest and look at its report."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         str(Path(__file__).parent / "data" / "failing_with_daemon.py")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert f"log of {STUB} (daemon under test)" in out
    assert "stub: owning org.ose.Provisioning1" in out


@pytest.mark.root
def test_real_oseprovd_honours_the_contract(ose_daemon: DaemonFactory) -> None:
    if not (REPO_ROOT / "oseprovd" / "app.py").exists():
        pytest.skip("oseprovd is not written yet (no oseprovd/app.py)")
    d = ose_daemon.start()
    assert bc.run_sync(lambda: _owner(d.bus_address)) == d.pid
    assert d.stop() == 0
