"""osectl.wire's marshalling, checked against dbus_fast as the independent ground truth.

Every value goes both ways: our encoder -> dbus_fast's unmarshaller, and dbus_fast's
marshaller -> our decoder. dbus_fast is only imported here, never by osectl.wire.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import _dbus_bindings as libdbus
import pytest
from dbus_fast import Message as FastMessage
from dbus_fast import MessageType as FastType
from dbus_fast import Variant as FastVariant
from dbus_fast._private.marshaller import Marshaller
from dbus_fast._private.unmarshaller import Unmarshaller
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dbus
from osectl import wire
from osectl.wire import (
    METHOD_CALL,
    SIGNAL,
    EncodeError,
    FrameBuffer,
    ProtocolError,
    SignatureError,
    Variant,
    WireError,
    decode_message,
    encode_body,
    encode_message,
    split_signature,
)
from osectl.wire import signature as names

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------- strategies

BASIC = "ybnqiuxtdsog"

single_types = st.recursive(
    st.sampled_from(list(BASIC + "v")),
    lambda inner: st.one_of(
        inner.map(lambda t: "a" + t),
        st.tuples(st.sampled_from(BASIC), inner).map(lambda kv: "a{" + kv[0] + kv[1] + "}"),
        st.lists(inner, min_size=1, max_size=4).map(lambda ts: "(" + "".join(ts) + ")"),
    ),
    max_leaves=6,
)
signatures = (
    st.lists(single_types, min_size=0, max_size=4).map("".join).filter(lambda s: len(s) <= 255)
)

texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    max_size=12,
)
path_parts = st.text(alphabet="abcXYZ019_", min_size=1, max_size=6)
object_paths = st.lists(path_parts, max_size=3).map(lambda parts: "/" + "/".join(parts))

INT_RANGES = {
    "y": (0, 2**8 - 1),
    "n": (-(2**15), 2**15 - 1),
    "q": (0, 2**16 - 1),
    "i": (-(2**31), 2**31 - 1),
    "u": (0, 2**32 - 1),
    "x": (-(2**63), 2**63 - 1),
    "t": (0, 2**64 - 1),
}


def values_of(t: str, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of D-Bus type t in osectl.wire's input representation."""
    c = t[0]
    if c in INT_RANGES:
        lo, hi = INT_RANGES[c]
        return st.integers(lo, hi)
    if c == "b":
        return st.booleans()
    if c == "d":
        return st.floats(allow_nan=False)
    if c == "s":
        return texts
    if c == "o":
        return object_paths
    if c == "g":
        return signatures
    if c == "v":
        inner_types = single_types if depth < 2 else st.sampled_from(list(BASIC))
        return inner_types.flatmap(
            lambda inner: values_of(inner, depth + 1).map(lambda v: Variant(inner, v))
        )
    if c == "(":
        return st.tuples(*(values_of(f, depth) for f in split_signature(t[1:-1])))
    elem = t[1:]
    if elem == "y":
        return st.binary(max_size=12)
    if elem[0] == "{":
        return st.dictionaries(values_of(elem[1], depth), values_of(elem[2:-1], depth), max_size=3)
    return st.lists(values_of(elem, depth), max_size=3)


@st.composite
def signed_bodies(draw: st.DrawFn) -> tuple[str, list[Any]]:
    sig = draw(signatures)
    return sig, [draw(values_of(t)) for t in split_signature(sig)]


# ------------------------------------------------------- representation converters


def plain(t: str, v: Any) -> Any:
    """What osectl.wire decodes a value of type t to (variants unwrapped)."""
    c = t[0]
    if c == "v":
        return plain(v.signature, v.value)
    if c == "(":
        return tuple(plain(f, x) for f, x in zip(split_signature(t[1:-1]), v, strict=True))
    if c == "a":
        elem = t[1:]
        if elem == "y":
            return bytes(v)
        if elem[0] == "{":
            return {plain(elem[1], k): plain(elem[2:-1], x) for k, x in v.items()}
        return [plain(elem, x) for x in v]
    return v


def to_fast(t: str, v: Any) -> Any:
    """Our input representation -> dbus_fast's (its own Variant class, lists for structs)."""
    c = t[0]
    if c == "v":
        return FastVariant(v.signature, to_fast(v.signature, v.value))
    if c == "(":
        return [to_fast(f, x) for f, x in zip(split_signature(t[1:-1]), v, strict=True)]
    if c == "a":
        elem = t[1:]
        if elem == "y":
            return bytes(v)
        if elem[0] == "{":
            return {to_fast(elem[1], k): to_fast(elem[2:-1], x) for k, x in v.items()}
        return [to_fast(elem, x) for x in v]
    return v


def from_fast(t: str, v: Any) -> Any:
    """dbus_fast's decoded representation -> ours."""
    c = t[0]
    if c == "v":
        assert isinstance(v, FastVariant)
        return from_fast(v.signature, v.value)
    if c == "(":
        return tuple(from_fast(f, x) for f, x in zip(split_signature(t[1:-1]), v, strict=True))
    if c == "a":
        elem = t[1:]
        if elem == "y":
            return bytes(v)
        if elem[0] == "{":
            return {from_fast(elem[1], k): from_fast(elem[2:-1], x) for k, x in v.items()}
        return [from_fast(elem, x) for x in v]
    return v


def fast_decode(data: bytes) -> FastMessage:
    msg = Unmarshaller(stream=io.BytesIO(data), negotiate_unix_fd=False).unmarshall()
    assert msg is not None, "dbus_fast could not unmarshal a whole message"
    return msg


def ours_to_fast(sig: str, body: list[Any]) -> None:
    data = encode_message(
        METHOD_CALL, 4242, path="/org/ose/T", interface="org.ose.T", member="M",
        destination="org.ose.Dest", signature=sig, body=body,
    )  # fmt: skip
    types = split_signature(sig)
    theirs = Marshaller(sig, [to_fast(t, v) for t, v in zip(types, body, strict=True)]).marshall()
    assert bytes(encode_body(sig, body)) == bytes(theirs)  # byte for byte, padding included
    msg = fast_decode(data)
    assert msg.serial == 4242
    assert (msg.path, msg.interface, msg.member) == ("/org/ose/T", "org.ose.T", "M")
    assert msg.destination == "org.ose.Dest"
    assert msg.signature == sig
    assert [from_fast(t, v) for t, v in zip(types, msg.body, strict=True)] == [
        plain(t, v) for t, v in zip(types, body, strict=True)
    ]


def fast_to_ours(sig: str, body: list[Any]) -> None:
    types = split_signature(sig)
    fast = FastMessage(
        destination="org.ose.Dest", path="/org/ose/T", interface="org.ose.T", member="Sig",
        message_type=FastType.SIGNAL, signature=sig, serial=77,
        body=[to_fast(t, v) for t, v in zip(types, body, strict=True)],
    )  # fmt: skip
    msg = decode_message(bytes(fast._marshall(False)))
    assert (msg.type, msg.serial, msg.signature) == (SIGNAL, 77, sig)
    assert (msg.path, msg.interface, msg.member) == ("/org/ose/T", "org.ose.T", "Sig")
    assert msg.body == [plain(t, v) for t, v in zip(types, body, strict=True)]


# ---------------------------------------------------------------- property tests

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(signed_bodies())
def test_our_encoding_is_read_back_by_dbus_fast(case: tuple[str, list[Any]]) -> None:
    ours_to_fast(*case)


@FAST
@given(signed_bodies())
def test_we_read_what_dbus_fast_encodes(case: tuple[str, list[Any]]) -> None:
    fast_to_ours(*case)


@FAST
@given(signed_bodies())
def test_keep_variants_gives_back_the_exact_input(case: tuple[str, list[Any]]) -> None:
    sig, body = case
    data = encode_message(SIGNAL, 1, path="/", interface="a.b", member="C", signature=sig,
                          body=body)  # fmt: skip
    assert decode_message(data, keep_variants=True).body == [
        # structs come back as tuples, arrays of bytes as bytes: the input already is
        v
        for v in body
    ]


# Alignment traps: each puts a container after an odd offset or leaves an 8-aligned
# array empty, where the padding after the length must still be written.
ALIGNMENT_CASES = [
    ("y(y)", [1, (2,)]),
    ("y(yt)", [1, (2, 3)]),
    ("ya{yv}", [7, {1: Variant("t", 2**64 - 1), 2: Variant("y", 9), 3: Variant("(yd)", (1, 0.5))}]),
    ("ya(ya(yt))", [1, [(2, [(3, 4), (5, 6)]), (7, [])]]),
    ("at", [[]]),  # length at 0..4, padding 4..8 even though the array is empty
    ("a(tt)", [[]]),
    ("a{td}", [{}]),
    ("yuat", [1, 2, []]),
    ("ya(tt)", [1, []]),
    ("yaat", [1, [[], [1], []]]),
    ("yvt", [1, Variant("t", 5), 6]),
    ("qvd", [1, Variant("ad", [1.5, -2.0]), 0.25]),
    ("ysyay", [1, "ab", 2, b"xyz"]),
    ("ygyv", [1, "a{sv}", 2, Variant("a(yv)", [(1, Variant("x", -1))])]),
    ("a{sv}", [{"a": Variant("aa{sv}", [{"x": Variant("y", 1)}]),
               "b": Variant("(sxd)", ("s", -3, 2.5))}]),
    ("ybnqiuxtdsog", [255, True, -1, 65535, -(2**31), 2**32 - 1, -(2**63), 2**64 - 1, 1e300,
                      "s", "/o", "g"]),
]  # fmt: skip


@pytest.mark.parametrize(("sig", "body"), ALIGNMENT_CASES)
def test_alignment_sensitive_cases_both_ways(sig: str, body: list[Any]) -> None:
    ours_to_fast(sig, body)
    fast_to_ours(sig, body)


@pytest.mark.parametrize(("sig", "body"), ALIGNMENT_CASES)
def test_body_bytes_match_dbus_fast_exactly(sig: str, body: list[Any]) -> None:
    types = split_signature(sig)
    theirs = Marshaller(sig, [to_fast(t, v) for t, v in zip(types, body, strict=True)]).marshall()
    assert bytes(encode_body(sig, body)) == bytes(theirs)


# ------------------------------------------------------------------ variant inference

INFERRED = {
    "str": ("x", "s"),
    "bool": (True, "b"),
    "int": (-5, "x"),
    "big": (2**63, "t"),
    "float": (1.5, "d"),
    "strings": (["a", "b"], "as"),
    "empty": ([], "as"),
    "ints": ([1, 2], "ax"),
    "mixed": ([1, "a"], "av"),
    "dict": ({"k": 1}, "a{sv}"),
    "dicts": ([{"a": 1}, {"b": "c"}], "aa{sv}"),
    "bytes": (b"\x00\xff", "ay"),
    "tuple": (("a", 1, 2.0), "(sxd)"),
    "explicit": (Variant("u", 7), "u"),
    "explicit_q": (Variant("aq", [1]), "aq"),
}


def test_a_sv_dict_infers_variant_types_as_dbus_fast_reads_them() -> None:
    body = [{k: v for k, (v, _) in INFERRED.items()}]
    msg = fast_decode(encode_message(METHOD_CALL, 1, path="/", member="M", signature="a{sv}",
                                     body=body))  # fmt: skip
    got = {k: v.signature for k, v in msg.body[0].items()}
    assert got == {k: sig for k, (_, sig) in INFERRED.items()}
    assert msg.body[0]["tuple"].value in (["a", 1, 2.0], ("a", 1, 2.0))
    assert msg.body[0]["dicts"].value[1]["b"].value == "c"


@pytest.mark.parametrize("value", [None, object(), {1: "a"}, (), 2**64, {1.5}])
def test_values_without_a_d_bus_type_are_refused(value: Any) -> None:
    with pytest.raises(EncodeError):
        encode_body("v", [value])


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("sig", "value"),
    [
        ("y", 256), ("y", -1), ("n", 2**15), ("q", -1), ("i", 2**31), ("u", 2**32),
        ("x", 2**63), ("t", -1), ("t", 2**64), ("i", 1.0), ("i", "1"), ("d", "1.0"),
        ("b", 2), ("b", "yes"), ("s", b"bytes"), ("s", "nul\0inside"), ("s", "\udc80"),
        ("o", "relative"), ("o", "/trailing/"), ("o", "/a//b"), ("o", "/bad-char"),
        ("g", "a{vs}"), ("as", "abc"), ("as", [1]), ("a{sv}", [("a", 1)]),
        ("(ii)", (1,)), ("(ii)", (1, 2, 3)), ("ay", "text"), ("ay", [256]),
        ("v", Variant("u", -1)),
    ],
)  # fmt: skip
def test_values_that_do_not_fit_raise_encode_error(sig: str, value: Any) -> None:
    with pytest.raises(EncodeError):
        encode_body(sig, [value])


def test_body_length_must_match_signature() -> None:
    with pytest.raises(EncodeError):
        encode_body("ss", ["only one"])


BAD_SIGNATURES = [
    "h", "ah", "a", "(", ")", "()", "(i", "{sv}", "a{sv", "a{vs}", "a{(i)s}", "a{s}",
    "a{sss}", "m", "i ", "a" * 33 + "i", "(" * 33 + "i" + ")" * 33, "i" * 256, "é", "{bb}",
]  # fmt: skip


@pytest.mark.parametrize("sig", BAD_SIGNATURES)
def test_invalid_signatures_are_refused(sig: str) -> None:
    with pytest.raises(SignatureError):
        split_signature(sig)


# libdbus (through dbus-python, a python-dbusmock dependency) is the reference for syntax.


def libdbus_accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except (ValueError, TypeError):
        return False
    return True


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ybnqiuxtdsoghva(){}", max_size=12))
def test_signature_validity_agrees_with_libdbus(sig: str) -> None:
    try:
        split_signature(sig, allow_fd=True)
        ours = True
    except SignatureError:
        ours = False
    assert ours == libdbus_accepts(dbus.Signature, sig)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab1_-.:/", max_size=12))
def test_name_syntax_agrees_with_libdbus(name: str) -> None:
    assert names.is_object_path(name) == libdbus_accepts(libdbus.validate_object_path, name)
    assert names.is_bus_name(name) == libdbus_accepts(libdbus.validate_bus_name, name)
    assert names.is_interface_name(name) == libdbus_accepts(libdbus.validate_interface_name, name)
    assert names.is_member_name(name) == libdbus_accepts(libdbus.validate_member_name, name)


def valid_message() -> bytes:
    return encode_message(
        METHOD_CALL, 9, path="/org/ose/X", interface="org.ose.X", member="Do",
        destination="org.ose.X", signature="sa{sv}(yt)av",
        body=["hi", {"a": [1, 2], "b": {"c": "d"}}, (1, 2), [Variant("s", "x"), 3]],
    )  # fmt: skip


def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def test_decode_rejects_specific_corruptions() -> None:
    good = valid_message()
    assert decode_message(good).body[0] == "hi"
    cases = {
        "bad byte order": patched(good, 0, b"X"),
        "protocol version": patched(good, 3, b"\x02"),
        "serial zero": patched(good, 8, b"\0\0\0\0"),
        "truncated": good[:-3],
        "trailing": good + b"\0" * 8,
        "body too long": patched(good, 4, struct.pack("<I", 2**31)),
    }
    for what, data in cases.items():
        with pytest.raises(ProtocolError):
            decode_message(data)
        assert what


def raw_signal(sig: str, body: bytes, extra_field: bytes = b"") -> bytes:
    """A signal laid out by hand from the spec: body bytes (and an extra field) as given."""
    header = bytearray(b"l\x04\x00\x01" + struct.pack("<II", len(body), 1) + b"\0\0\0\0")
    fields = bytearray(extra_field)
    for code, t, value in ((1, "o", "/"), (2, "s", "a.b"), (3, "s", "C")):
        fields += b"\0" * (-len(fields) & 7)
        raw = value.encode()
        fields += bytes((code, 1, ord(t), 0)) + struct.pack("<I", len(raw)) + raw + b"\0"
    fields += b"\0" * (-len(fields) & 7)
    fields += bytes((8, 1, ord("g"), 0, len(sig))) + sig.encode() + b"\0"
    struct.pack_into("<I", header, 12, len(fields))
    out = header + fields
    out += b"\0" * (-len(out) & 7)
    return bytes(out + body)


@pytest.mark.parametrize(
    ("sig", "body"),
    [
        ("b", struct.pack("<I", 2)),  # boolean 2
        ("s", struct.pack("<I", 3) + b"abcd"),  # no NUL terminator
        ("s", struct.pack("<I", 2) + b"\xff\xfe\0"),  # not UTF-8
        ("s", struct.pack("<I", 3) + b"a\0b\0"),  # NUL inside
        ("o", struct.pack("<I", 3) + b"a/b\0"),  # not an object path
        ("g", b"\x02h(\0"),  # invalid signature value
        ("v", b"\x01h\0\0" + struct.pack("<I", 0)),  # unix fd inside a variant
        ("v", b"\x02ii\0" + b"\0" * 8),  # variant of two types
        ("ai", struct.pack("<I", 100) + b"\0" * 4),  # array past the end
        ("ai", struct.pack("<I", 3) + b"\0" * 4),  # length not a multiple of 4
        ("at", struct.pack("<I", 8) + b"\1\0\0\0" + b"\0" * 8),  # non-zero padding
        ("ay", struct.pack("<I", 2**27)),  # over the 64 MiB array limit
        ("(yy)", b"\1"),  # short struct
        ("y", b"\1\2"),  # trailing bytes in the body
    ],
)
def test_malformed_bodies_raise_protocol_error(sig: str, body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_message(raw_signal(sig, body))


def test_raw_signal_helper_builds_valid_messages() -> None:
    # the corrupted cases above differ from this one only in the broken part
    assert decode_message(raw_signal("u", struct.pack("<I", 5))).body == [5]


def test_deeply_nested_variants_are_refused_not_recursed_into() -> None:
    value: Any = Variant("s", "core")
    for _ in range(100):
        value = Variant("v", value)
    data = encode_message(SIGNAL, 1, path="/", interface="a.b", member="C", signature="v",
                          body=[value])  # fmt: skip
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode_message(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_only_ever_raise_wire_errors(data: bytes) -> None:
    buf = FrameBuffer()
    buf.feed(data)
    try:
        frame = buf.next_message()
        if frame is not None:
            decode_message(frame)
    except WireError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_corrupted_messages_only_ever_raise_wire_errors(data: st.DataObject) -> None:
    good = bytearray(valid_message())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(good) - 1))
        good[at] = data.draw(st.integers(0, 255))
    with contextlib.suppress(WireError):
        decode_message(bytes(good))


# ------------------------------------------------------------------- framing


@settings(max_examples=100, deadline=None)
@given(st.lists(signed_bodies(), min_size=1, max_size=4), st.data())
def test_framing_survives_any_split_of_the_stream(
    cases: list[tuple[str, list[Any]]], data: st.DataObject
) -> None:
    msgs = [
        encode_message(
            SIGNAL, n + 1, path="/", interface="a.b", member="C", signature=sig, body=body
        )
        for n, (sig, body) in enumerate(cases)
    ]
    stream = b"".join(msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    buf = FrameBuffer()
    got = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        buf.feed(stream[prev:cut])
        prev = cut
        while (frame := buf.next_message()) is not None:
            got.append(frame)
    assert got == msgs
    assert len(buf) == 0


def test_frame_buffer_refuses_oversized_message_from_header_alone() -> None:
    buf = FrameBuffer(max_size=1024)
    buf.feed(b"l\x04\x00\x01" + struct.pack("<III", 4096, 1, 0))
    with pytest.raises(ProtocolError, match="exceeds"):
        buf.next_message()


def test_big_endian_messages_are_decoded() -> None:
    # dbus_fast only writes little-endian; this one is laid out by hand from the spec.
    body = struct.pack(">I", 3) + b"abc\0" + struct.pack(">i", -2)
    fields = bytearray()
    for code, t, value in ((1, "o", "/p"), (2, "s", "a.b"), (3, "s", "Sig")):
        fields += b"\0" * (-len(fields) & 7)
        raw = value.encode()
        fields += bytes((code, 1, ord(t), 0)) + struct.pack(">I", len(raw)) + raw + b"\0"
    fields += b"\0" * (-len(fields) & 7)
    fields += b"\x08\x01g\x00\x02si\x00"
    header = b"B\x04\x00\x01" + struct.pack(">III", len(body), 5, len(fields)) + fields
    data = header + b"\0" * (-len(header) & 7) + body
    msg = decode_message(data)
    assert (msg.serial, msg.path, msg.member, msg.body) == (5, "/p", "Sig", ["abc", -2])


# ------------------------------------------------------------- names and rules


def test_invalid_names_are_refused_before_sending() -> None:
    ok = {"path": "/a", "member": "M", "interface": "a.b", "destination": "org.x"}
    encode_message(METHOD_CALL, 1, **ok)
    bad_names = [
        ("path", "a"), ("member", "1M"), ("member", "a.b"), ("interface", "ab"),
        ("interface", "a..b"), ("destination", "x"), ("destination", ":"),
    ]  # fmt: skip
    for key, bad in bad_names:
        with pytest.raises(EncodeError):
            encode_message(METHOD_CALL, 1, **{**ok, key: bad})


def test_match_rules_quote_and_parse_back() -> None:
    rule = wire.match_rule(type="signal", path="/a", arg0="it's, odd")
    assert wire.parse_match_rule(rule) == {"type": "signal", "path": "/a", "arg0": "it's, odd"}


# --------------------------------------------------------------- import budget

FORBIDDEN = {"asyncio", "dbus_fast", "pydantic", "socket", "selectors", "enum", "re",
             "typing", "dataclasses", "logging", "json", "collections"}  # fmt: skip


def test_import_pulls_in_nothing_heavy() -> None:
    """The CLI's start-up budget: no asyncio/dbus_fast/pydantic, not even socket or re."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules);"
        "import osectl.wire; print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(REPO)],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""},
    ).stdout.split()  # fmt: skip
    assert "osectl.wire.connection" in out
    assert not FORBIDDEN & set(out)


# ------------------------------------------------- auth handling with a scripted peer


HELLO_DENIED = bytes(
    FastMessage(
        message_type=FastType.ERROR, error_name="org.freedesktop.DBus.Error.AccessDenied",
        reply_serial=1, serial=1, signature="s", body=["not you"],
    )._marshall(False)
)  # fmt: skip


def scripted_peer(tmp_path: Path, reply: bytes | None) -> str:
    """A unix socket whose one peer reads the auth line, then sends `reply` and closes
    (reply None: never answers). Protocol-misbehaviour that a real bus cannot produce."""
    path = tmp_path / "peer.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            if reply is None:
                conn.recv(4096)  # hold the connection until the client gives up
            else:
                conn.sendall(reply)
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"unix:path={path}"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"REJECTED DBUS_COOKIE_SHA1 ANONYMOUS\r\n", "rejected .*DBUS_COOKIE_SHA1"),
        (b"ERROR\r\n", "unexpected authentication reply"),
        (b"OK 0123456789abcdef0123456789abcdef\r\n", "Hello|closed"),
        (b"", "closed the connection"),
        (None, "timed out"),
        (b"OK 0123456789abcdef0123456789abcdef\r\n" + HELLO_DENIED, "Hello failed.*AccessDenied"),
    ],
)
def test_auth_failures_are_bus_unreachable(
    tmp_path: Path, reply: bytes | None, reason: str
) -> None:
    address = scripted_peer(tmp_path, reply)
    with pytest.raises(wire.BusUnreachable, match=reason) as info:
        wire.connect(address, timeout=0.5)
    assert info.value.address == address


@pytest.mark.parametrize(
    "address",
    ["unix:path=/nonexistent/bus", "unix:abstract=ose-wire-test-nobody-listens",
     "tcp:host=localhost,port=1", "", "unix:path=%zz"],
)  # fmt: skip
def test_unconnectable_addresses_are_bus_unreachable(address: str) -> None:
    with pytest.raises(wire.BusUnreachable) as info:
        wire.connect(address, timeout=0.5)
    assert info.value.address == address


def test_system_bus_address_honours_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    assert wire.system_bus_address() == "unix:path=/run/dbus/system_bus_socket"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/tmp/x")
    assert wire.system_bus_address() == "unix:path=/tmp/x"


def test_unknown_header_fields_are_skipped() -> None:
    # The spec: unknown header fields must be accepted and ignored. Field 0x40 is an
    # "at" (struct start 8-aligned: code, sig "at", pad to 8, length, pad to 16, one t).
    field = b"\x40\x02at\0" + b"\0" * 3 + struct.pack("<I", 8) + b"\0" * 4 + struct.pack("<Q", 7)
    data = raw_signal("u", struct.pack("<I", 5), extra_field=field)
    # (dbus_fast itself raises KeyError on this message, so it cannot referee here)
    msg = decode_message(data)
    assert (msg.member, msg.body) == ("C", [5])


def test_a_body_with_unix_fds_only_fails_when_decoded() -> None:
    data = raw_signal("h", struct.pack("<I", 0))
    msg = decode_message(data, with_body=False)  # header fine: the connection survives
    assert msg.signature == "h"
    with pytest.raises(ProtocolError):
        decode_message(data)
