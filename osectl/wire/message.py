"""D-Bus messages: the header, framing of a byte stream, and whole-message (de)coding."""

from __future__ import annotations

from struct import Struct
from struct import error as StructError

from osectl.wire.codec import _str_at, decode_values, decoder, encode_body
from osectl.wire.errors import EncodeError, ProtocolError, SignatureError
from osectl.wire.signature import (
    is_bus_name,
    is_interface_name,
    is_member_name,
    is_object_path,
    split_signature,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

METHOD_CALL = 1
METHOD_RETURN = 2
ERROR = 3
SIGNAL = 4

FLAG_NO_REPLY_EXPECTED = 0x1
FLAG_NO_AUTO_START = 0x2
FLAG_ALLOW_INTERACTIVE_AUTHORIZATION = 0x4

MAX_MESSAGE_SIZE = 128 * 1024 * 1024  # the spec's limit on a whole message

# Header field codes and the one type each must carry.
_PATH, _INTERFACE, _MEMBER, _ERROR_NAME, _REPLY_SERIAL = 1, 2, 3, 4, 5
_DESTINATION, _SENDER, _SIGNATURE, _UNIX_FDS = 6, 7, 8, 9
_FIELD_TYPES = {1: "o", 2: "s", 3: "s", 4: "s", 5: "u", 6: "s", 7: "s", 8: "g", 9: "u"}
_FIELD_ATTRS = {
    1: "path", 2: "interface", 3: "member", 4: "error_name", 5: "reply_serial",
    6: "destination", 7: "sender", 8: "signature", 9: "unix_fds",
}  # fmt: skip
_REQUIRED = {
    METHOD_CALL: ("path", "member"),
    METHOD_RETURN: ("reply_serial",),
    ERROR: ("error_name", "reply_serial"),
    SIGNAL: ("path", "interface", "member"),
}

_FIXED_LE = Struct("<4BIII")
_FIXED_BE = Struct(">4BIII")
_U32_LE = Struct("<I")
_U32_BE = Struct(">I")
_PADDING = [bytes(n) for n in range(8)]


class Message:
    """One decoded message. `body` is a list of plain Python values."""

    __slots__ = (
        "body",
        "destination",
        "error_name",
        "flags",
        "interface",
        "member",
        "path",
        "reply_serial",
        "sender",
        "serial",
        "signature",
        "type",
        "unix_fds",
    )

    def __init__(self, type: int, serial: int = 0, flags: int = 0) -> None:
        self.type = type
        self.serial = serial
        self.flags = flags
        self.path: str | None = None
        self.interface: str | None = None
        self.member: str | None = None
        self.error_name: str | None = None
        self.reply_serial: int = 0
        self.destination: str | None = None
        self.sender: str | None = None
        self.signature: str = ""
        self.unix_fds: int = 0
        self.body: list[Any] = []

    def __repr__(self) -> str:
        kind = {1: "call", 2: "return", 3: "error", 4: "signal"}.get(self.type, str(self.type))
        name = self.error_name or f"{self.interface}.{self.member}"
        return f"<Message {kind} #{self.serial} {self.path} {name} ({self.signature})>"


def _header_string(out: bytearray, code: int, sig: str, value: str) -> None:
    out += b"\0" * (-len(out) & 7)
    raw = value.encode()
    if sig == "g":
        out += bytes((code, 1, 0x67, 0, len(raw)))
        out += raw
        out.append(0)
        return
    out += bytes((code, 1, ord(sig), 0))  # 4 bytes: the string's length is aligned
    out += _U32_LE.pack(len(raw))
    out += raw
    out.append(0)


_valid_names: set[tuple[str, str]] = set()  # a CLI sends the same few names over and over


def _check_names(
    *,
    path: str | None,
    interface: str | None,
    member: str | None,
    error_name: str | None,
    destination: str | None,
    sender: str | None,
) -> None:
    checks = (
        (path, is_object_path, "object path"),
        (interface, is_interface_name, "interface name"),
        (member, is_member_name, "member name"),
        (error_name, is_interface_name, "error name"),
        (destination, is_bus_name, "bus name"),
        (sender, is_bus_name, "bus name"),
    )
    for value, valid, what in checks:
        if value is not None and (what, value) not in _valid_names:
            if not valid(value):
                raise EncodeError(f"invalid {what} {value!r}")
            if len(_valid_names) < 1024:
                _valid_names.add((what, value))


def encode_message(
    type: int,
    serial: int,
    *,
    flags: int = 0,
    path: str | None = None,
    interface: str | None = None,
    member: str | None = None,
    error_name: str | None = None,
    reply_serial: int = 0,
    destination: str | None = None,
    sender: str | None = None,
    signature: str = "",
    body: list[Any] | tuple[Any, ...] = (),
) -> bytes:
    """Marshal a whole little-endian message, checking names the bus would reject."""
    if not 0 < serial < 2**32:
        raise EncodeError(f"invalid serial {serial}")
    _check_names(
        path=path, interface=interface, member=member, error_name=error_name,
        destination=destination, sender=sender,
    )  # fmt: skip
    present = {
        "path": path, "member": member, "interface": interface,
        "error_name": error_name, "reply_serial": reply_serial,
    }  # fmt: skip
    for field in _REQUIRED.get(type, ()):
        if not present[field]:
            raise EncodeError(f"message type {type} needs a {field}")
    body_bytes = encode_body(signature, body)
    out = bytearray(_FIXED_LE.pack(0x6C, type, flags, 1, len(body_bytes), serial, 0))
    strings = (
        (_PATH, "o", path), (_INTERFACE, "s", interface), (_MEMBER, "s", member),
        (_ERROR_NAME, "s", error_name),
    )  # fmt: skip
    for code, sig, value in strings:
        if value is not None:
            _header_string(out, code, sig, value)
    if reply_serial:
        out += b"\0" * (-len(out) & 7)
        out += bytes((_REPLY_SERIAL, 1, 0x75, 0))
        out += _U32_LE.pack(reply_serial)
    for code, sig, value in ((_DESTINATION, "s", destination), (_SENDER, "s", sender)):
        if value is not None:
            _header_string(out, code, sig, value)
    if signature:
        _header_string(out, _SIGNATURE, "g", signature)
    _U32_LE.pack_into(out, 12, len(out) - 16)
    out += b"\0" * (-len(out) & 7)
    if len(out) + len(body_bytes) > MAX_MESSAGE_SIZE:
        raise EncodeError("message exceeds the 128 MiB limit")
    out += body_bytes
    return bytes(out)


def message_length(buf: bytes | bytearray, max_size: int = MAX_MESSAGE_SIZE) -> int:
    """Total length of the message starting at buf[0] (needs 16 bytes), bounds-checked."""
    endian = buf[0]
    if endian == 0x6C:
        fixed = _FIXED_LE
    elif endian == 0x42:
        fixed = _FIXED_BE
    else:
        raise ProtocolError(f"invalid byte-order mark {endian:#x}: not a D-Bus stream")
    version: int
    body_len: int
    fields_len: int
    _, _, _, version, body_len, _, fields_len = fixed.unpack_from(buf, 0)
    if version != 1:
        raise ProtocolError(f"unsupported D-Bus protocol version {version}")
    header_len = 16 + fields_len
    header_len += -header_len & 7
    total = header_len + body_len
    if fields_len > max_size or body_len > max_size or total > max_size:
        raise ProtocolError(f"message of {total} bytes exceeds the limit of {max_size}")
    return total


def decode_message(data: bytes, *, with_body: bool = True, keep_variants: bool = False) -> Message:
    """Decode one whole message (exactly `message_length` bytes).

    With with_body=False only the header is decoded; decode_body() does the rest later,
    so that a malformed body of a message nobody waits for costs nothing.
    """
    if len(data) < 16:
        raise ProtocolError("message shorter than its fixed header")
    total = message_length(data, max(len(data), 16))
    if total != len(data):
        raise ProtocolError(f"message length {total} does not match {len(data)} bytes")
    order = "<" if data[0] == 0x6C else ">"
    fixed = _FIXED_LE if order == "<" else _FIXED_BE
    _, mtype, flags, _, _, serial, fields_len = fixed.unpack_from(data, 0)
    if serial == 0:
        raise ProtocolError("message serial is 0")
    msg = Message(mtype, serial, flags)
    _decode_header_fields(msg, data, order, 16 + fields_len)
    if with_body:
        decode_body(msg, data, keep_variants=keep_variants)
    return msg


def _decode_header_fields(msg: Message, data: bytes, order: str, end: int) -> None:
    try:
        _read_header_fields(msg, data[:end], order)
    except ProtocolError as exc:
        raise ProtocolError(f"malformed message header: {exc}") from None
    except (StructError, IndexError, ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"malformed message header: {exc}") from None
    body_start = end + (-end & 7)
    if data[end:body_start] != bytes(body_start - end):
        raise ProtocolError("non-zero padding after the header")
    for attr in _REQUIRED.get(msg.type, ()):
        if not getattr(msg, attr):
            raise ProtocolError(f"message of type {msg.type} lacks its {attr} header field")
    if msg.unix_fds:
        raise ProtocolError("message carries unix fds, which this client never negotiates")


def _read_field_value(
    hdr: bytes, pos: int, expected: str, u32: Callable[[bytes, int], tuple[int]]
) -> tuple[str | int, int]:
    if expected == "g":
        return _str_at(hdr, pos + 1, hdr[pos])
    pad = -pos & 3
    if hdr[pos : pos + pad] != _PADDING[pad]:
        raise ProtocolError("non-zero padding in the header")
    pos += pad
    if expected == "u":
        return u32(hdr, pos)[0], pos + 4
    value, pos = _str_at(hdr, pos + 4, u32(hdr, pos)[0])
    if expected == "o" and not is_object_path(value):
        raise ProtocolError(f"invalid object path {value!r:.80} in the header")
    return value, pos


def _read_header_fields(msg: Message, hdr: bytes, order: str) -> None:
    """The a(yv) header array, read by hand: it is on every message's hot path."""
    u32 = (_U32_LE if order == "<" else _U32_BE).unpack_from
    end = len(hdr)
    pos = 16
    while pos < end:
        pad = -pos & 7
        if hdr[pos : pos + pad] != _PADDING[pad]:
            raise ProtocolError("non-zero padding in the header")
        pos += pad
        code = hdr[pos]
        sig, pos = _str_at(hdr, pos + 2, hdr[pos + 1])
        expected = _FIELD_TYPES.get(code)
        if expected is None:  # the spec says unknown header fields must be ignored
            if len(split_signature(sig)) != 1:
                raise ProtocolError(f"header field {code} has signature {sig!r}")
            _, pos = decoder(sig, order)(hdr, pos, 1)
            continue
        if sig != expected:
            raise ProtocolError(f"header field {code} has type {sig!r}, not {expected!r}")
        value, pos = _read_field_value(hdr, pos, expected, u32)
        setattr(msg, _FIELD_ATTRS[code], value)
    if pos != end:
        raise ProtocolError("header fields overrun their length")
    if msg.signature:
        try:  # 'h' passes here: a body we cannot decode only matters if we wait for it
            split_signature(msg.signature, allow_fd=True)
        except SignatureError as exc:
            raise ProtocolError(f"invalid body signature: {exc}") from None


def _body_start(data: bytes) -> int:
    fields_len: int = (_U32_LE if data[0] == 0x6C else _U32_BE).unpack_from(data, 12)[0]
    end = 16 + fields_len
    return end + (-end & 7)


def decode_body(msg: Message, data: bytes, *, keep_variants: bool = False) -> None:
    """Fill msg.body from the message bytes it was decoded from."""
    order = "<" if data[0] == 0x6C else ">"
    msg.body = decode_values(
        data, _body_start(data), len(data), msg.signature, order=order, keep_variants=keep_variants
    )


class FrameBuffer:
    """Cuts a byte stream into whole messages: partial reads and many per read alike."""

    __slots__ = ("_buf", "max_size")

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self.max_size = max_size

    def feed(self, data: bytes | memoryview) -> None:
        self._buf += data

    def __len__(self) -> int:
        return len(self._buf)

    def missing(self) -> int:
        """Bytes still needed before next_message() can return a message (>= 1)."""
        buf = self._buf
        if len(buf) < 16:
            return 16 - len(buf)
        return max(message_length(buf, self.max_size) - len(buf), 1)

    def next_message(self) -> bytes | None:
        """The next whole message's bytes, or None if it is not complete yet."""
        buf = self._buf
        if len(buf) < 16:
            return None
        total = message_length(buf, self.max_size)
        if len(buf) < total:
            return None
        data = bytes(buf[:total])
        del buf[:total]
        return data

    def take_line(self, limit: int = 16384) -> bytes | None:
        """One CRLF-terminated auth line (without CRLF), or None if incomplete."""
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > limit:
                raise ProtocolError("authentication line too long")
            return None
        line = bytes(buf[:end])
        del buf[: end + 2]
        return line
