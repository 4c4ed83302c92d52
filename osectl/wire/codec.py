"""Marshalling and unmarshalling of D-Bus values (the whole type system except 'h').

Each single complete type compiles once into a closure; closures are cached by signature.
Encoders append to a bytearray whose offset 0 is 8-aligned in the message (a body or a
header), so alignment computed from len(out) is the spec's alignment.
Decoders read (buf, pos, depth) from the whole message and return (value, new_pos).

Python mapping: y n q i u x t -> int, b -> bool, d -> float, s o g -> str, ay -> bytes,
a{kv} -> dict, other arrays -> list, structs -> tuple, variants -> their plain value
(or Variant when keep_variants is set).
"""

from __future__ import annotations

from struct import Struct
from struct import error as StructError

from osectl.wire.errors import EncodeError, ProtocolError, SignatureError
from osectl.wire.signature import Variant, is_object_path, split_signature

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Encoder = Callable[[bytearray, Any], None]
    Decoder = Callable[[bytes, int, int], tuple[Any, int]]

MAX_ARRAY_LEN = 64 * 1024 * 1024  # spec: arrays are at most 64 MiB
MAX_DEPTH = 64  # spec: containers (incl. variants) nest at most 64 deep in a message

_ZEROS = [bytes(n) for n in range(8)]
_ALIGN = {
    "y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8,
    "s": 4, "o": 4, "g": 1, "v": 1, "a": 4, "(": 8, "{": 8,
}  # fmt: skip
_FIXED = {"y": "B", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d"}

_U32_LE = Struct("<I")
_pack_u32 = _U32_LE.pack
_pack_into_u32 = _U32_LE.pack_into


def alignment(t: str) -> int:
    return _ALIGN[t[0]]


# --------------------------------------------------------------------------- encoding


def _pad(out: bytearray, align: int) -> None:
    n = -len(out) & (align - 1)
    if n:
        out += _ZEROS[n]


def _enc_str(out: bytearray, v: Any) -> None:
    if type(v) is not str:
        raise EncodeError(f"expected str, got {type(v).__name__}")
    raw = v.encode()
    if b"\0" in raw:
        raise EncodeError("D-Bus strings cannot contain NUL")
    n = -len(out) & 3
    if n:
        out += _ZEROS[n]
    out += _pack_u32(len(raw))
    out += raw
    out.append(0)


def _enc_path(out: bytearray, v: Any) -> None:
    if not is_object_path(v):
        raise EncodeError(f"invalid object path {v!r}")
    _enc_str(out, v)


def _enc_sig(out: bytearray, v: Any) -> None:
    if type(v) is not str:
        raise EncodeError(f"expected a signature str, got {type(v).__name__}")
    try:
        split_signature(v, allow_fd=True)
    except SignatureError as exc:
        raise EncodeError(f"invalid signature value: {exc}") from None
    raw = v.encode()
    out.append(len(raw))
    out += raw
    out.append(0)


def _enc_bool(out: bytearray, v: Any) -> None:
    if not (v is True or v is False or (type(v) is int and v in (0, 1))):
        raise EncodeError(f"expected bool, got {v!r}")
    _pad(out, 4)
    out += _pack_u32(1 if v else 0)


def _make_fixed_enc(code: str) -> Encoder:
    st = Struct("<" + _FIXED[code])
    pack = st.pack
    mask = st.size - 1
    is_float = code == "d"

    def enc(out: bytearray, v: Any) -> None:
        if is_float:
            if type(v) is not float and (type(v) is not int):
                raise EncodeError(f"expected float, got {type(v).__name__}")
        elif type(v) is not int and type(v) is not bool:
            raise EncodeError(f"expected int for {code!r}, got {type(v).__name__}")
        n = -len(out) & mask
        if n:
            out += _ZEROS[n]
        try:
            out += pack(v)
        except StructError:
            raise EncodeError(f"{v!r} is out of range for D-Bus type {code!r}") from None

    return enc


def _make_array_enc(t: str) -> Encoder:
    elem = t[1:]
    ealign = alignment(elem)
    if elem == "y":

        def enc_bytes(out: bytearray, v: Any) -> None:
            if not isinstance(v, (bytes, bytearray, memoryview)):
                if not isinstance(v, (list, tuple)):
                    raise EncodeError(f"expected bytes for 'ay', got {type(v).__name__}")
                try:
                    v = bytes(v)
                except (ValueError, TypeError) as exc:
                    raise EncodeError(f"invalid byte array: {exc}") from None
            if len(v) > MAX_ARRAY_LEN:
                raise EncodeError("array longer than 64 MiB")
            _pad(out, 4)
            out += _pack_u32(len(v))
            out += v

        return enc_bytes

    if elem[0] == "{":
        kenc = encoder(elem[1])
        venc = encoder(elem[2:-1])

        def enc_dict(out: bytearray, v: Any) -> None:
            if not isinstance(v, dict):
                raise EncodeError(f"expected dict for {t!r}, got {type(v).__name__}")
            _pad(out, 4)
            at = len(out)
            out += b"\0\0\0\0"
            _pad(out, 8)
            start = len(out)
            for key, val in v.items():
                _pad(out, 8)
                kenc(out, key)
                venc(out, val)
            size = len(out) - start
            if size > MAX_ARRAY_LEN:
                raise EncodeError("array longer than 64 MiB")
            _pack_into_u32(out, at, size)

        return enc_dict

    eenc = encoder(elem)

    def enc_array(out: bytearray, v: Any) -> None:
        if not isinstance(v, (list, tuple)):
            raise EncodeError(f"expected list for {t!r}, got {type(v).__name__}")
        _pad(out, 4)
        at = len(out)
        out += b"\0\0\0\0"
        n = -len(out) & (ealign - 1)
        if n:
            out += _ZEROS[n]
        start = len(out)
        for item in v:
            eenc(out, item)
        size = len(out) - start
        if size > MAX_ARRAY_LEN:
            raise EncodeError("array longer than 64 MiB")
        _pack_into_u32(out, at, size)

    return enc_array


def _make_struct_enc(t: str) -> Encoder:
    fields = [encoder(f) for f in split_signature(t[1:-1])]
    count = len(fields)

    def enc_struct(out: bytearray, v: Any) -> None:
        if not isinstance(v, (tuple, list)) or len(v) != count:
            raise EncodeError(f"expected a {count}-tuple for {t!r}, got {v!r:.80}")
        _pad(out, 8)
        for fenc, item in zip(fields, v, strict=True):
            fenc(out, item)

    return enc_struct


def _enc_variant(out: bytearray, v: Any) -> None:
    if isinstance(v, Variant):
        sig, value = v.signature, v.value
    else:
        sig, value = infer_signature(v), v
    _enc_sig(out, sig)
    encoder(sig)(out, value)


_encoders: dict[str, Encoder] = {
    "s": _enc_str, "o": _enc_path, "g": _enc_sig, "b": _enc_bool, "v": _enc_variant,
}  # fmt: skip


def encoder(t: str) -> Encoder:
    """The encoder of one single complete type (compiled once, then cached)."""
    enc = _encoders.get(t)
    if enc is None:
        if split_signature(t) != (t,):
            raise SignatureError(f"not a single complete type: {t!r}")
        c = t[0]
        if c in _FIXED:
            enc = _make_fixed_enc(c)
        elif c == "a":
            enc = _make_array_enc(t)
        else:
            enc = _make_struct_enc(t)
        _encoders[t] = enc
    return enc


def _infer_list(items: list[Any] | tuple[Any, ...]) -> str:
    if not items:
        return "as"  # an empty list has no element type; strings are the common case
    sigs = {infer_signature(item) for item in items}
    if len(sigs) == 1:
        return "a" + sigs.pop()
    return "av"


_SCALAR_SIGNATURES: dict[type, str] = {
    str: "s", bool: "b", float: "d", bytes: "ay", bytearray: "ay", Variant: "v",
}  # fmt: skip


def infer_signature(v: Any) -> str:
    """The D-Bus type a plain Python value gets inside a variant.

    str->s, bool->b, int->x (t above int64), float->d, bytes->ay, dict[str, ...]->a{sv},
    list->a<common type> (av if mixed, as if empty), tuple->struct, Variant->v.
    """
    sig = _SCALAR_SIGNATURES.get(type(v))
    if sig is not None:
        return sig
    if type(v) is int:
        return "x" if -(2**63) <= v < 2**63 else "t"
    if isinstance(v, dict):
        if all(type(k) is str for k in v):
            return "a{sv}"
        raise EncodeError("only dicts with str keys can be put in a variant without Variant()")
    if isinstance(v, list):
        return _infer_list(v)
    if isinstance(v, tuple) and v:
        return "(" + "".join(infer_signature(item) for item in v) + ")"
    raise EncodeError(
        f"cannot infer a D-Bus type for {type(v).__name__}; wrap the value in Variant()"
    )


def encode_body(signature: str, values: list[Any] | tuple[Any, ...]) -> bytearray:
    """Marshal `values` (one per complete type of `signature`) little-endian."""
    types = split_signature(signature)
    if not isinstance(values, (list, tuple)) or len(values) != len(types):
        raise EncodeError(f"signature {signature!r} needs {len(types)} values")
    out = bytearray()
    try:
        for t, v in zip(types, values, strict=True):
            encoder(t)(out, v)
    except RecursionError:
        raise EncodeError("value nested too deeply") from None
    except UnicodeEncodeError as exc:
        raise EncodeError(f"string is not valid UTF-8: {exc.reason}") from None
    return out


# --------------------------------------------------------------------------- decoding

_decoders: dict[tuple[str, str, bool], Decoder] = {}


def _check_pad(buf: bytes, start: int, end: int) -> None:
    if end > start and buf[start:end] != _ZEROS[end - start]:
        raise ProtocolError(f"non-zero alignment padding at offset {start}")


def _str_at(buf: bytes, pos: int, n: int) -> tuple[str, int]:
    end = pos + n
    if end >= len(buf) or buf[end] != 0:
        raise ProtocolError(f"string at offset {pos} is not NUL-terminated in bounds")
    raw = buf[pos:end]
    if b"\0" in raw:
        raise ProtocolError(f"string at offset {pos} contains NUL")
    try:
        return raw.decode(), end + 1
    except UnicodeDecodeError:
        raise ProtocolError(f"string at offset {pos} is not valid UTF-8") from None


def _dec_fixed(t: str, order: str, keep: bool) -> Decoder:
    unpack = Struct(order + _FIXED[t]).unpack_from
    size = Struct(_FIXED[t]).size
    mask = size - 1

    def dec_fixed(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        n = -pos & mask
        if n:
            _check_pad(buf, pos, pos + n)
            pos += n
        return unpack(buf, pos)[0], pos + size

    return dec_fixed


def _dec_bool(t: str, order: str, keep: bool) -> Decoder:
    u32 = Struct(order + "I").unpack_from

    def dec_bool(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        n = -pos & 3
        _check_pad(buf, pos, pos + n)
        pos += n
        v = u32(buf, pos)[0]
        if v > 1:
            raise ProtocolError(f"boolean at offset {pos} is {v}, not 0 or 1")
        return v == 1, pos + 4

    return dec_bool


def _dec_str(t: str, order: str, keep: bool) -> Decoder:
    u32 = Struct(order + "I").unpack_from
    is_path = t == "o"

    def dec_str(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        n = -pos & 3
        if n:
            _check_pad(buf, pos, pos + n)
            pos += n
        s, pos = _str_at(buf, pos + 4, u32(buf, pos)[0])
        if is_path and not is_object_path(s):
            raise ProtocolError(f"invalid object path {s!r:.80}")
        return s, pos

    return dec_str


def _dec_sig(t: str, order: str, keep: bool) -> Decoder:
    def dec_sig(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        s, pos = _str_at(buf, pos + 1, buf[pos])
        try:
            split_signature(s, allow_fd=True)
        except SignatureError as exc:
            raise ProtocolError(f"invalid signature value: {exc}") from None
        return s, pos

    return dec_sig


def _dec_variant(t: str, order: str, keep: bool) -> Decoder:
    def dec_variant(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        if depth >= MAX_DEPTH:
            raise ProtocolError("values nested too deeply")
        s, pos = _str_at(buf, pos + 1, buf[pos])
        # A signature that already has a decoder was validated as one complete type
        # when that decoder was made: a big a{sv} repeats a few signatures thousands
        # of times, and parsing each again was most of the decoding time.
        dec = _decoders.get((s, order, keep))
        if dec is None:
            try:
                types = split_signature(s)
            except SignatureError as exc:
                raise ProtocolError(f"invalid variant signature: {exc}") from None
            if len(types) != 1:
                raise ProtocolError(f"variant signature {s!r} is not one complete type")
            dec = decoder(s, order, keep)
        value, pos = dec(buf, pos, depth + 1)
        return (Variant(s, value) if keep else value), pos

    return dec_variant


def _dec_struct(t: str, order: str, keep: bool) -> Decoder:
    fields = [decoder(f, order, keep) for f in split_signature(t[1:-1])]

    def dec_struct(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        if depth >= MAX_DEPTH:
            raise ProtocolError("values nested too deeply")
        n = -pos & 7
        if n:
            _check_pad(buf, pos, pos + n)
            pos += n
        items = []
        for fdec in fields:
            item, pos = fdec(buf, pos, depth + 1)
            items.append(item)
        return tuple(items), pos

    return dec_struct


def _array_bounds_reader(order: str, elem: str) -> Callable[[bytes, int, int], tuple[int, int]]:
    u32 = Struct(order + "I").unpack_from
    emask = alignment(elem) - 1

    def bounds(buf: bytes, pos: int, depth: int) -> tuple[int, int]:
        """(first element offset, end offset) of the array whose length is at pos."""
        if depth >= MAX_DEPTH:
            raise ProtocolError("values nested too deeply")
        n = -pos & 3
        if n:
            _check_pad(buf, pos, pos + n)
            pos += n
        size = u32(buf, pos)[0]
        pos += 4
        if size > MAX_ARRAY_LEN:
            raise ProtocolError(f"array of {size} bytes exceeds the 64 MiB limit")
        n = -pos & emask
        if n:
            _check_pad(buf, pos, pos + n)
            pos += n
        end = pos + size
        if end > len(buf):
            raise ProtocolError(f"array at offset {pos} runs past the end of the message")
        return pos, end

    return bounds


def _dec_array(t: str, order: str, keep: bool) -> Decoder:
    elem = t[1:]
    bounds = _array_bounds_reader(order, elem)
    if elem == "y":

        def dec_bytes(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
            pos, end = bounds(buf, pos, depth)
            return bytes(buf[pos:end]), end

        return dec_bytes

    if elem in _FIXED:
        ecode = _FIXED[elem]
        esize = alignment(elem)

        def dec_fixed_array(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
            pos, end = bounds(buf, pos, depth)
            count, rest = divmod(end - pos, esize)
            if rest:
                raise ProtocolError(f"array length {end - pos} is not a multiple of {esize}")
            return list(Struct(f"{order}{count}{ecode}").unpack_from(buf, pos)), end

        return dec_fixed_array

    if elem[0] == "{":
        return _dec_dict(elem, order, keep, bounds)

    edec = decoder(elem, order, keep)

    def dec_array(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        pos, end = bounds(buf, pos, depth)
        items = []
        inner = depth + 1
        while pos < end:
            item, pos = edec(buf, pos, inner)
            items.append(item)
        if pos != end:
            raise ProtocolError("array elements overrun their array length")
        return items, end

    return dec_array


def _dec_dict(
    elem: str, order: str, keep: bool, bounds: Callable[[bytes, int, int], tuple[int, int]]
) -> Decoder:
    kdec = decoder(elem[1], order, keep)
    vdec = decoder(elem[2:-1], order, keep)

    def dec_dict(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
        pos, end = bounds(buf, pos, depth)
        result = {}
        inner = depth + 2
        while pos < end:
            n = -pos & 7
            if n:
                _check_pad(buf, pos, pos + n)
                pos += n
            key, pos = kdec(buf, pos, inner)
            result[key], pos = vdec(buf, pos, inner)
        if pos != end:
            raise ProtocolError("dict entries overrun their array length")
        return result, end

    return dec_dict


_DECODER_FACTORIES: dict[str, Callable[[str, str, bool], Decoder]] = {
    **dict.fromkeys(_FIXED, _dec_fixed),
    "b": _dec_bool, "s": _dec_str, "o": _dec_str, "g": _dec_sig, "v": _dec_variant,
    "(": _dec_struct, "a": _dec_array,
}  # fmt: skip


def decoder(t: str, order: str = "<", keep_variants: bool = False) -> Decoder:
    """The decoder of one single complete type for byte order '<' or '>' (cached)."""
    key = (t, order, keep_variants)
    dec = _decoders.get(key)
    if dec is None:
        dec = _DECODER_FACTORIES[t[0]](t, order, keep_variants)
        if len(_decoders) < 4096:
            _decoders[key] = dec
    return dec


def decode_values(
    buf: bytes,
    pos: int,
    end: int,
    signature: str,
    *,
    order: str = "<",
    keep_variants: bool = False,
) -> list[Any]:
    """Unmarshal buf[pos:end] (pos is 8-aligned in the message) as `signature`.

    Raises ProtocolError for anything malformed, never another exception.
    """
    try:
        types = split_signature(signature)
    except SignatureError as exc:
        raise ProtocolError(f"cannot decode signature {signature!r}: {exc}") from None
    view = buf[:end] if end != len(buf) else buf
    values = []
    try:
        for t in types:
            value, pos = decoder(t, order, keep_variants)(view, pos, 0)
            values.append(value)
    except ProtocolError:
        raise
    except (StructError, IndexError, ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"malformed body for signature {signature!r}: {exc}") from None
    if pos != end:
        raise ProtocolError(f"{end - pos} unexpected bytes after the body")
    return values
