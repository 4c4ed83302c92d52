"""A blocking D-Bus connection: connect + SASL EXTERNAL + Hello, calls, signals.

Uses the C `_socket` module, not `socket`: `import socket` pulls in enum, selectors and
collections (~6 ms), more than this whole client may cost the CLI at start-up.
The socket is non-blocking; waits happen in poll(), so a deadline covers a whole call.
Not thread-safe: one connection per thread.
"""

from __future__ import annotations

import _socket
import os
import select
import time

from osectl.wire.address import session_bus_address, system_bus_address, unix_socket_targets
from osectl.wire.errors import (
    BusUnreachable,
    CallTimeout,
    ConnectionLost,
    DBusCallError,
    EncodeError,
    ProtocolError,
)
from osectl.wire.message import (
    ERROR,
    FLAG_ALLOW_INTERACTIVE_AUTHORIZATION,
    FLAG_NO_REPLY_EXPECTED,
    MAX_MESSAGE_SIZE,
    METHOD_CALL,
    METHOD_RETURN,
    SIGNAL,
    FrameBuffer,
    Message,
    decode_body,
    decode_message,
    encode_message,
)
from oseprovd.bus.names import DBUS_BUS_NAME, DBUS_IFACE, DBUS_PATH, DBUS_PROPERTIES_IFACE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DEFAULT_CALL_TIMEOUT = 25.0  # libdbus' default reply timeout
DEFAULT_CONNECT_TIMEOUT = 10.0
MAX_QUEUED_SIGNALS = 10000
_PEER_IFACE = "org.freedesktop.DBus.Peer"
_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"


class _Deadline(Exception):
    """Internal: the deadline passed while waiting for bytes."""


def connect(
    address: str | None = None,
    *,
    bus: str = "system",
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    hello: bool = True,
    max_message_size: int = MAX_MESSAGE_SIZE,
) -> Connection:
    """Connect and authenticate to `address`, or to the system/session bus by default.

    The system bus address honours DBUS_SYSTEM_BUS_ADDRESS. With hello=False the peer is
    not a bus (no Hello call, no unique name). Raises BusUnreachable.
    """
    if bus not in ("system", "session"):
        raise ValueError(f"bus must be 'system' or 'session', not {bus!r}")
    if address is None:
        address = session_bus_address() if bus == "session" else system_bus_address()
    deadline = time.monotonic() + timeout
    sock = _connect_socket(address, timeout)
    conn = Connection(sock, address, max_message_size)
    try:
        conn._authenticate(deadline, hello)
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_socket(address: str, timeout: float) -> _socket.socket:
    reason = "no address to try"
    for target in unix_socket_targets(address):
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(target)
        except OSError as exc:
            sock.close()
            reason = exc.strerror or str(exc) or type(exc).__name__
            continue
        sock.setblocking(False)
        return sock
    raise BusUnreachable(address, reason)


def match_rule(**keys: str) -> str:
    """Build a match rule, quoting each value: match_rule(type="signal", member="Finished")."""
    return ",".join(f"{k}='" + v.replace("'", "'\\''") + "'" for k, v in keys.items())


def parse_match_rule(rule: str) -> dict[str, str]:
    """The key -> value pairs of a match rule (quotes and \\' escapes resolved)."""
    result: dict[str, str] = {}
    i, n = 0, len(rule)
    while i < n:
        eq = rule.find("=", i)
        if eq < 0:
            raise EncodeError(f"match rule {rule!r} has a key without a value")
        key = rule[i:eq].strip()
        i = eq + 1
        value: list[str] = []
        while i < n and rule[i] != ",":
            if rule[i] == "'":
                close = rule.find("'", i + 1)
                if close < 0:
                    raise EncodeError(f"unterminated quote in match rule {rule!r}")
                value.append(rule[i + 1 : close])
                i = close + 1
            elif rule.startswith("\\'", i):
                value.append("'")
                i += 2
            else:
                value.append(rule[i])
                i += 1
        result[key] = "".join(value)
        i += 1
    return result


def _rule_matches(rule: dict[str, str], msg: Message) -> bool:
    """Local re-check of a match rule, so a connection's signal queue holds only what
    some add_match asked for (not NameAcquired and friends). Keys the bus applies in
    ways we cannot re-check (well-known sender names, argNpath) count as matching."""
    for key, value in rule.items():
        if key == "type":
            ok = value == "signal"
        elif key == "sender":
            ok = msg.sender == value or not (value.startswith(":") or value == DBUS_BUS_NAME)
        elif key == "interface":
            ok = msg.interface == value
        elif key == "member":
            ok = msg.member == value
        elif key == "path":
            ok = msg.path == value
        elif key == "path_namespace":
            path = msg.path or ""
            ok = value in ("/", path) or path.startswith(value + "/")
        elif key == "destination":
            ok = msg.destination == value
        elif key.startswith("arg") and key[3:].isdigit():
            index = int(key[3:])
            ok = index < len(msg.body) and msg.body[index] == value
        else:
            ok = True
        if not ok:
            return False
    return True


class Connection:
    """One authenticated connection. Use `connect()` to make one; close() when done."""

    def __init__(self, sock: _socket.socket, address: str, max_message_size: int) -> None:
        self._sock: _socket.socket | None = sock
        self._poll_in = select.poll()
        self._poll_in.register(sock.fileno(), select.POLLIN)
        self._poll_out: select.poll | None = None
        self._chunk = bytearray(65536)
        self._chunk_view = memoryview(self._chunk)
        self.address = address
        self.unique_name: str | None = None
        self.guid: str | None = None
        self._frames = FrameBuffer(max_message_size)
        self._serial = 0
        self._signals: list[Message] = []
        self._rules: dict[str, dict[str, str]] = {}
        self.dropped_messages = 0  # malformed or overflowing messages nobody waited for

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    @property
    def closed(self) -> bool:
        return self._sock is None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fileno(self) -> int:
        """For select/poll loops; after a wake-up, drain with next_signal(0)."""
        if self._sock is None:
            raise ConnectionLost(self.address, "the connection is closed")
        return self._sock.fileno()

    def _authenticate(self, deadline: float, hello: bool) -> None:
        # Pipelined like sd-bus: AUTH, BEGIN and Hello leave in one write, so the whole
        # handshake costs one round trip. The bus keeps bytes after BEGIN as messages.
        uid = str(os.getuid()).encode().hex().encode()
        out = b"\0AUTH EXTERNAL " + uid + b"\r\nBEGIN\r\n"
        serial = 0
        if hello:
            serial = self._next_serial()
            out += encode_message(
                METHOD_CALL, serial, path=DBUS_PATH, interface=DBUS_IFACE,
                member="Hello", destination=DBUS_BUS_NAME,
            )  # fmt: skip
        try:
            self._send(out, deadline)
            line = self._read_line(deadline)
        except (_Deadline, CallTimeout):
            raise BusUnreachable(self.address, "timed out during authentication") from None
        except ConnectionLost as exc:
            raise BusUnreachable(self.address, f"during authentication: {exc.reason}") from None
        if line.startswith(b"REJECTED"):
            offered = line[8:].decode("ascii", "replace").strip() or "none"
            raise BusUnreachable(
                self.address, f"EXTERNAL authentication rejected (server offers: {offered})"
            )
        if not line.startswith(b"OK "):
            text = line[:80].decode("ascii", "replace")
            raise BusUnreachable(self.address, f"unexpected authentication reply {text!r}")
        self.guid = line[3:].decode("ascii", "replace").strip()
        if hello:
            try:
                reply = self._wait_reply(serial, deadline, False)
            except CallTimeout:
                raise BusUnreachable(self.address, "timed out waiting for Hello") from None
            except (DBusCallError, ProtocolError) as exc:
                raise BusUnreachable(self.address, f"Hello failed: {exc}") from None
            name = reply.body[0] if reply.body else None
            if not isinstance(name, str):
                raise BusUnreachable(self.address, "Hello did not return a unique name")
            self.unique_name = name

    # -- bytes in and out ----------------------------------------------------------

    def _live_sock(self) -> _socket.socket:
        if self._sock is None:
            raise ConnectionLost(self.address, "the connection is closed")
        return self._sock

    def _next_serial(self) -> int:
        self._serial = self._serial % 0xFFFFFFFF + 1
        return self._serial

    @staticmethod
    def _wait(poller: select.poll, deadline: float | None) -> None:
        """Block in poll() until the socket is ready; _Deadline when time is up."""
        if deadline is None:
            timeout_ms = None
        else:
            remaining = deadline - time.monotonic()
            timeout_ms = max(0, int(remaining * 1000 + 0.999))  # round up: never spin
        if not poller.poll(timeout_ms):
            raise _Deadline

    def _send(self, data: bytes, deadline: float | None) -> None:
        sock = self._live_sock()
        view = memoryview(data)
        try:
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    if self._poll_out is None:
                        self._poll_out = select.poll()
                        self._poll_out.register(sock.fileno(), select.POLLOUT)
                    self._wait(self._poll_out, deadline)
        except _Deadline:
            self.close()  # a partial write leaves the stream unusable
            raise CallTimeout("timed out sending to the bus") from None
        except OSError as exc:
            self.close()
            raise ConnectionLost(self.address, exc.strerror or str(exc)) from None

    def _recv(self, need: int, deadline: float | None) -> None:
        """Read what is there (waiting up to the deadline); _Deadline if nothing came."""
        sock = self._live_sock()
        self._wait(self._poll_in, deadline)
        try:
            if need <= len(self._chunk):
                count = sock.recv_into(self._chunk_view)
                chunk: bytes | memoryview = self._chunk_view[:count]
            else:  # the rest of a big message: read it in large pieces
                chunk = sock.recv(min(need, 1 << 22))
                count = len(chunk)
        except BlockingIOError:
            return  # woken without data; the caller loops and waits again
        except OSError as exc:
            self.close()
            raise ConnectionLost(self.address, exc.strerror or str(exc)) from None
        if not count:
            self.close()
            raise ConnectionLost(self.address, "the bus closed the connection")
        self._frames.feed(chunk)

    def _read_line(self, deadline: float) -> bytes:
        while True:
            try:
                line = self._frames.take_line()
            except ProtocolError as exc:
                raise BusUnreachable(self.address, str(exc)) from None
            if line is not None:
                return line
            self._recv(1, deadline)

    def _read_frame(self, deadline: float | None) -> bytes:
        frames = self._frames
        while True:
            try:
                data = frames.next_message()
                if data is None:
                    need = frames.missing()
            except ProtocolError:
                self.close()  # framing is lost: nothing after this can be trusted
                raise
            if data is not None:
                return data
            self._recv(need, deadline)

    def _read_message(self, deadline: float | None) -> tuple[Message, bytes]:
        data = self._read_frame(deadline)
        try:
            return decode_message(data, with_body=False), data
        except ProtocolError:
            self.close()
            raise

    # -- dispatch --------------------------------------------------------------------

    def _wait_reply(self, serial: int, deadline: float | None, keep_variants: bool) -> Message:
        while True:
            try:
                msg, data = self._read_message(deadline)
            except _Deadline:
                raise CallTimeout("no reply from the bus within the timeout") from None
            if msg.reply_serial == serial and msg.type in (METHOD_RETURN, ERROR):
                decode_body(msg, data, keep_variants=keep_variants)
                if msg.type == ERROR:
                    text = msg.body[0] if msg.body and isinstance(msg.body[0], str) else ""
                    raise DBusCallError(msg.error_name or "", text, msg.body)
                return msg
            self._handle_other(msg, data)

    def _handle_other(self, msg: Message, data: bytes) -> None:
        if msg.type == SIGNAL:
            if not self._rules:
                return
            try:
                decode_body(msg, data)
            except ProtocolError:
                self.dropped_messages += 1
                return
            if any(_rule_matches(rule, msg) for rule in self._rules.values()):
                if len(self._signals) >= MAX_QUEUED_SIGNALS:
                    del self._signals[0]
                    self.dropped_messages += 1
                self._signals.append(msg)
        elif msg.type == METHOD_CALL and not msg.flags & FLAG_NO_REPLY_EXPECTED:
            self._answer_call(msg)
        # other replies (to calls that timed out) and unknown types are ignored

    def _answer_call(self, msg: Message) -> None:
        # Somebody called us (a Ping, or by mistake): answer rather than let them wait.
        if msg.sender is None:
            return
        try:
            if msg.interface in (_PEER_IFACE, None) and msg.member == "Ping":
                reply = encode_message(
                    METHOD_RETURN, self._next_serial(), reply_serial=msg.serial,
                    destination=msg.sender,
                )  # fmt: skip
            else:
                reply = encode_message(
                    ERROR, self._next_serial(), reply_serial=msg.serial,
                    destination=msg.sender, error_name=_UNKNOWN_METHOD,
                    signature="s", body=["this client exports no objects"],
                )  # fmt: skip
        except EncodeError:
            return
        try:
            self._send(reply, time.monotonic() + 1.0)
        except CallTimeout:
            return  # _send closed the connection; the caller's next read says ConnectionLost

    # -- public API ----------------------------------------------------------------

    def call(
        self,
        destination: str | None,
        path: str,
        interface: str | None,
        member: str,
        signature: str = "",
        body: list[Any] | tuple[Any, ...] = (),
        *,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
        allow_interactive_authorization: bool = False,
        keep_variants: bool = False,
    ) -> list[Any]:
        """Call a method and return the reply's body as a list of Python values.

        Raises DBusCallError for an ERROR reply, CallTimeout when no reply came within
        `timeout` seconds (None: wait forever), EncodeError for arguments that do not
        fit `signature`, ConnectionLost / ProtocolError when the connection broke.
        Signals that arrive meanwhile are queued for next_signal().
        """
        flags = FLAG_ALLOW_INTERACTIVE_AUTHORIZATION if allow_interactive_authorization else 0
        serial = self._next_serial()
        data = encode_message(
            METHOD_CALL, serial, flags=flags, path=path, interface=interface, member=member,
            destination=destination, signature=signature, body=body,
        )  # fmt: skip
        deadline = None if timeout is None else time.monotonic() + timeout
        self._send(data, deadline)
        try:
            return self._wait_reply(serial, deadline, keep_variants).body
        except CallTimeout:
            raise CallTimeout(
                f"no reply to {interface}.{member} on {destination} within {timeout} s"
            ) from None

    def call_bus(self, member: str, signature: str = "", body: list[Any] | tuple[Any, ...] = ()
                 ) -> list[Any]:  # fmt: skip
        """Call a method of the bus itself (org.freedesktop.DBus)."""
        return self.call(DBUS_BUS_NAME, DBUS_PATH, DBUS_IFACE, member, signature, body)

    def get_property(
        self, destination: str, path: str, interface: str, name: str,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ) -> Any:  # fmt: skip
        body = self.call(
            destination,
            path,
            DBUS_PROPERTIES_IFACE,
            "Get",
            "ss",
            (interface, name),
            timeout=timeout,
        )
        return body[0]

    def get_all_properties(
        self, destination: str, path: str, interface: str,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ) -> dict[str, Any]:  # fmt: skip
        body = self.call(
            destination, path, DBUS_PROPERTIES_IFACE, "GetAll", "s", (interface,), timeout=timeout
        )
        result: dict[str, Any] = body[0]
        return result

    def add_match(self, rule: str) -> None:
        """Subscribe to signals (org.freedesktop.DBus.AddMatch); see match_rule()."""
        parsed = parse_match_rule(rule)
        self.call_bus("AddMatch", "s", (rule,))
        self._rules[rule] = parsed

    def remove_match(self, rule: str) -> None:
        self._rules.pop(rule, None)
        self.call_bus("RemoveMatch", "s", (rule,))

    def next_signal(self, timeout: float | None = None) -> Message | None:
        """The next queued or arriving signal that matches an added rule.

        Blocks on the socket up to `timeout` seconds (None: forever); None on timeout.
        """
        if self._signals:
            return self._signals.pop(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                msg, data = self._read_message(deadline)
            except _Deadline:
                return None
            self._handle_other(msg, data)
            if self._signals:
                return self._signals.pop(0)

    def iter_signals(self, timeout: float | None = None) -> Iterator[Message]:
        """Yield matching signals until `timeout` seconds have passed (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            msg = self.next_signal(remaining)
            if msg is None:
                return
            yield msg
