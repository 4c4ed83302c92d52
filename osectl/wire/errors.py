"""Errors of the wire client. Everything it raises is a WireError, so a caller (the CLI's
one error-mapping point) can catch one class and never sees a parser's traceback."""

from __future__ import annotations


class WireError(Exception):
    """Base of every error raised by osectl.wire."""


class SignatureError(WireError, ValueError):
    """A D-Bus type signature is malformed or uses a type this client does not support."""


class EncodeError(WireError, ValueError):
    """A Python value does not fit the D-Bus type it is to be marshalled as."""


class ProtocolError(WireError):
    """The peer sent bytes that are not a valid D-Bus message (or exceed our bounds)."""


class BusUnreachable(WireError):
    """No connection to the bus: no socket, refused, permission denied, or auth refused."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot connect to D-Bus at {address}: {reason}")
        self.address = address
        self.reason = reason


class ConnectionLost(BusUnreachable):
    """The bus closed the connection (or it broke) after it was established."""


class CallTimeout(WireError, TimeoutError):
    """No reply came within the timeout. A late reply is dropped when it arrives."""


class DBusCallError(WireError):
    """The peer answered with an ERROR message: `name` is the D-Bus error name."""

    def __init__(self, name: str, message: str, body: list[object] | None = None) -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name
        self.message = message
        self.body = body if body is not None else []
