"""osectl.wire against a real private dbus-daemon and a dbus-fast service.

Ground truth comes from outside our code: dbus-send (libdbus) for the bus's own answers,
the kernel (our uid) for credentials, and a dbus-fast service for values and signals.
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from osectl import wire

SERVICE = Path(__file__).with_name("wire_echo_service.py")
NAME = "org.ose.Test.WireEcho"
PATH = "/org/ose/Test/WireEcho"
IFACE = "org.ose.Test.WireEcho"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def require_tool(name: str) -> str:
    """The tool's path; skip when missing, but fail under CI=true (the house rule)."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required for this test (CI=true)")
    pytest.skip(f"{name} is not installed")


class PrivateBus:
    def __init__(self, workdir: Path) -> None:
        daemon = require_tool("dbus-daemon")
        config = workdir / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=workdir / "bus"))
        self.proc = subprocess.Popen(
            [daemon, f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line:
            self.stop()
            pytest.fail(f"dbus-daemon printed no address: {self.proc.stderr.read()!r}")
        self.address = line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()


@pytest.fixture(scope="module")
def bus_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    bus = PrivateBus(tmp_path_factory.mktemp("wirebus"))
    try:
        yield bus.address
    finally:
        bus.stop()


@pytest.fixture(scope="module")
def echo(bus_address: str) -> Iterator[str]:
    """Starts the dbus-fast echo service; ready when its name appears on the bus."""
    with wire.connect(bus_address) as watcher:
        watcher.add_match(wire.match_rule(
            type="signal", sender="org.freedesktop.DBus", member="NameOwnerChanged", arg0=NAME,
        ))  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, str(SERVICE), bus_address],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            owner = None
            while owner is None and proc.poll() is None and time.monotonic() < deadline:
                signal = watcher.next_signal(timeout=0.5)
                if signal is not None and signal.body[2]:
                    owner = signal.body[2]
            if owner is None:
                proc.kill()
                pytest.fail(f"echo service never took its name: {proc.communicate()[1]}")
            yield owner
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(5)
            if proc.stderr:
                proc.stderr.close()


@pytest.fixture
def conn(bus_address: str) -> Iterator[wire.Connection]:
    with wire.connect(bus_address) as connection:
        yield connection


def dbus_send(address: str, method: str) -> list[str]:
    """The bus's answer as libdbus' dbus-send prints it (independent of our decoder)."""
    out = subprocess.run(
        [require_tool("dbus-send"), f"--bus={address}", "--print-reply=literal",
         "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus", f"org.freedesktop.DBus.{method}"],
        check=True, capture_output=True, text=True, timeout=10,
    ).stdout  # fmt: skip
    return [token for token in out.split() if token not in ("array", "[", "]")]


# ------------------------------------------------------------------- the bus itself


def test_hello_gives_a_unique_name_the_bus_lists(conn: wire.Connection, bus_address: str) -> None:
    assert conn.unique_name is not None
    assert conn.unique_name.startswith(":")
    assert conn.unique_name in dbus_send(bus_address, "ListNames")
    assert conn.call_bus("GetNameOwner", "s", [conn.unique_name]) == [conn.unique_name]


def test_get_id_matches_libdbus(conn: wire.Connection, bus_address: str) -> None:
    (bus_id,) = conn.call_bus("GetId")
    assert bus_id == dbus_send(bus_address, "GetId")[0]
    assert len(bus_id) == 32


def test_list_names_matches_libdbus(conn: wire.Connection, bus_address: str, echo: str) -> None:
    (ours,) = conn.call_bus("ListNames")
    theirs = set(dbus_send(bus_address, "ListNames"))
    assert {"org.freedesktop.DBus", NAME, echo, conn.unique_name} <= set(ours)
    assert set(ours) <= theirs
    assert len(theirs - set(ours)) == 1  # dbus-send's own connection


def test_bus_sees_our_uid(conn: wire.Connection) -> None:
    assert conn.call_bus("GetConnectionUnixUser", "s", [conn.unique_name]) == [os.getuid()]


# ------------------------------------------------------------- a dbus-fast service


def test_a_sv_round_trip_and_inferred_types(conn: wire.Connection, echo: str) -> None:
    sent = {
        "s": "text", "b": True, "i": -5, "d": 1.5, "strings": ["a", "b"],
        "nested": {"k": [1, 2]}, "records": [{"a": 1}, {"b": "c"}],
        "u": wire.Variant("u", 7), "rec": ("a", 1, 2.0), "raw": b"\x00\xff",
    }  # fmt: skip
    (back,) = conn.call(NAME, PATH, IFACE, "EchoDict", "a{sv}", [sent])
    assert back == {**sent, "u": 7}
    (types,) = conn.call(NAME, PATH, IFACE, "VariantTypes", "a{sv}", [sent])
    assert types == {
        "s": "s", "b": "b", "i": "x", "d": "d", "strings": "as", "nested": "a{sv}",
        "records": "aa{sv}", "u": "u", "rec": "(sxd)", "raw": "ay",
    }  # fmt: skip


def test_aa_sv_and_struct_round_trip(conn: wire.Connection, echo: str) -> None:
    records = [{"id": 1, "tags": ["x"]}, {}, {"deep": {"deeper": {"x": 0.25}}}]
    assert conn.call(NAME, PATH, IFACE, "EchoList", "aa{sv}", [records]) == [records]
    assert conn.call(NAME, PATH, IFACE, "EchoStruct", "(sxd)", [("é", -(2**40), -0.5)]) == [
        ("é", -(2**40), -0.5)
    ]


def test_a_16_mib_message_round_trips(conn: wire.Connection, echo: str) -> None:
    blob = os.urandom(16 * 1024 * 1024)
    assert conn.call(NAME, PATH, IFACE, "EchoBytes", "ay", [blob], timeout=20) == [blob]


def test_properties(conn: wire.Connection, echo: str) -> None:
    assert conn.get_property(NAME, PATH, IFACE, "Name") == "echo"
    assert conn.get_property(NAME, PATH, IFACE, "Count") == 42
    assert conn.get_all_properties(NAME, PATH, IFACE) == {"Name": "echo", "Count": 42}


def test_interactive_authorization_flag_is_sent_only_when_asked(
    conn: wire.Connection, echo: str
) -> None:
    (plain,) = conn.call(NAME, PATH, IFACE, "Flags")
    (asked,) = conn.call(NAME, PATH, IFACE, "Flags", allow_interactive_authorization=True)
    assert not plain & 0x4
    assert asked & 0x4


# ------------------------------------------------------------------------ errors


def test_error_reply_raises_dbus_call_error(conn: wire.Connection, echo: str) -> None:
    with pytest.raises(wire.DBusCallError) as info:
        conn.call(NAME, PATH, IFACE, "Fail")
    assert info.value.name == "org.ose.Error.TestFailure"
    assert info.value.message == "it failed as asked"


def test_unknown_method_is_an_error_name(conn: wire.Connection, echo: str) -> None:
    with pytest.raises(wire.DBusCallError) as info:
        conn.call(NAME, PATH, IFACE, "NoSuchMethod")
    assert info.value.name == "org.freedesktop.DBus.Error.UnknownMethod"


def test_missing_name_is_service_unknown(conn: wire.Connection) -> None:
    with pytest.raises(wire.DBusCallError) as info:
        conn.call("org.ose.Test.Nobody", "/", "org.ose.Test.Nobody", "Anything")
    assert info.value.name == "org.freedesktop.DBus.Error.ServiceUnknown"


def test_timeout_is_honoured_and_the_late_reply_is_dropped(
    conn: wire.Connection, echo: str
) -> None:
    start = time.monotonic()
    with pytest.raises(wire.CallTimeout):
        conn.call(NAME, PATH, IFACE, "Sleep", "d", [1.0], timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 0.9
    # The 1 s reply arrives while this call waits; it must not be taken for this one.
    assert conn.call(NAME, PATH, IFACE, "Sleep", "d", [1.2], timeout=5) == [1.2]


def test_bad_addresses_are_bus_unreachable(tmp_path: Path, bus_address: str) -> None:
    not_a_socket = tmp_path / "file"
    not_a_socket.write_text("")
    for address in (f"unix:path={tmp_path}/missing", f"unix:path={not_a_socket}"):
        with pytest.raises(wire.BusUnreachable) as info:
            wire.connect(address)
        assert address in str(info.value)
    # a list of addresses falls through to the first one that works
    with wire.connect(f"unix:path={tmp_path}/missing;{bus_address}") as fallback:
        assert fallback.call_bus("GetId")


def test_bus_going_away_is_connection_lost(tmp_path: Path) -> None:
    bus = PrivateBus(tmp_path)
    try:
        connection = wire.connect(bus.address)
    finally:
        bus.stop()
    with pytest.raises(wire.ConnectionLost):
        connection.call_bus("GetId")
    assert connection.closed


# ----------------------------------------------------------------------- signals


def test_signal_via_add_match_is_queued_during_a_call(conn: wire.Connection, echo: str) -> None:
    conn.add_match(wire.match_rule(type="signal", interface=IFACE, member="Ping"))
    conn.call(NAME, PATH, IFACE, "Emit", "sa{sv}", ["hello", {"n": 1, "l": ["x"]}])
    # dbus-fast sends the signal before the reply, so the call already read and queued it
    signal = conn.next_signal(timeout=0)
    assert signal is not None
    assert (signal.path, signal.interface, signal.member) == (PATH, IFACE, "Ping")
    assert signal.signature == "sa{sv}"
    assert signal.body == ["hello", {"n": 1, "l": ["x"]}]
    assert signal.sender == echo
    # NameAcquired (sent to us after Hello) matches no rule we added, so it is not queued
    assert conn.next_signal(timeout=0.1) is None


def test_iter_signals_blocks_without_spinning(
    conn: wire.Connection, bus_address: str, echo: str
) -> None:
    conn.add_match(wire.match_rule(type="signal", sender=NAME, path=PATH, member="Ping"))
    cpu = time.process_time()
    wall = time.monotonic()
    assert list(conn.iter_signals(timeout=0.4)) == []
    assert time.monotonic() - wall >= 0.4
    assert time.process_time() - cpu < 0.1  # waiting in poll, not looping
    with wire.connect(bus_address) as other:
        for n in range(3):
            other.call(NAME, PATH, IFACE, "Emit", "sa{sv}", [f"m{n}", {}])
    got = list(itertools.islice(conn.iter_signals(timeout=5), 3))
    assert [s.body[0] for s in got] == ["m0", "m1", "m2"]


def test_ping_to_us_is_answered(conn: wire.Connection, bus_address: str) -> None:
    assert conn.unique_name is not None
    with wire.connect(bus_address) as other:
        # conn answers while it waits in its own call
        result: list[object] = []
        pinger = threading.Thread(
            target=lambda: result.append(
                other.call(conn.unique_name, "/", "org.freedesktop.DBus.Peer", "Ping", timeout=5)
            )
        )
        pinger.start()
        deadline = time.monotonic() + 5
        while pinger.is_alive() and time.monotonic() < deadline:
            conn.next_signal(timeout=0.05)  # reading is what answers the Ping
        pinger.join(1)
        assert result == [[]]


def test_default_addresses_come_from_the_environment(
    bus_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus_address)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus_address)
    for bus in ("system", "session"):
        with wire.connect(bus=bus) as connection:
            assert connection.address == bus_address
            assert connection.unique_name in dbus_send(bus_address, "ListNames")


def test_a_reply_over_our_size_bound_is_a_protocol_error(bus_address: str, echo: str) -> None:
    with wire.connect(bus_address, max_message_size=1024 * 1024) as small:
        with pytest.raises(wire.ProtocolError, match="exceeds"):
            small.call(NAME, PATH, IFACE, "EchoBytes", "ay", [bytes(2 * 1024 * 1024)])
        assert small.closed  # the rest of the stream cannot be trusted
