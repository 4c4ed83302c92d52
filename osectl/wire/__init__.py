"""A small, synchronous, stdlib-only D-Bus client for osectl.

The CLI must start fast, so this must not import dbus_fast, asyncio, pydantic or even
`socket`/`re`/`typing` (tests/unit/test_wire_codec.py checks the import set).

    with wire.connect() as bus:              # system bus; honours DBUS_SYSTEM_BUS_ADDRESS
        state = bus.get_property(BUS_NAME, path, IFACE_JOB, "State")
        bus.call(BUS_NAME, path, IFACE, "Method", "a{sv}", [{"key": 1}])
"""

from __future__ import annotations

from osectl.wire.address import session_bus_address, system_bus_address
from osectl.wire.codec import decode_values, encode_body, infer_signature
from osectl.wire.connection import (
    DEFAULT_CALL_TIMEOUT,
    Connection,
    connect,
    match_rule,
    parse_match_rule,
)
from osectl.wire.errors import (
    BusUnreachable,
    CallTimeout,
    ConnectionLost,
    DBusCallError,
    EncodeError,
    ProtocolError,
    SignatureError,
    WireError,
)
from osectl.wire.message import (
    ERROR,
    METHOD_CALL,
    METHOD_RETURN,
    SIGNAL,
    FrameBuffer,
    Message,
    decode_message,
    encode_message,
)
from osectl.wire.signature import Variant, split_signature

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "ERROR",
    "METHOD_CALL",
    "METHOD_RETURN",
    "SIGNAL",
    "BusUnreachable",
    "CallTimeout",
    "Connection",
    "ConnectionLost",
    "DBusCallError",
    "EncodeError",
    "FrameBuffer",
    "Message",
    "ProtocolError",
    "SignatureError",
    "Variant",
    "WireError",
    "connect",
    "decode_message",
    "decode_values",
    "encode_body",
    "encode_message",
    "infer_signature",
    "match_rule",
    "parse_match_rule",
    "session_bus_address",
    "split_signature",
    "system_bus_address",
]
