"""D-Bus type signatures, the Variant wrapper and name syntax checks (no `re`: import cost)."""

from __future__ import annotations

from osectl.wire.errors import SignatureError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_SIGNATURE_LEN = 255
MAX_ARRAY_DEPTH = 32
MAX_STRUCT_DEPTH = 32

# Type codes that may be dict keys. 'h' (unix fd) is a basic type in the spec, but this
# client never negotiates fd passing, so it refuses 'h' wherever it marshals values.
_BASIC = frozenset("ybnqiuxtdsog")
_SINGLE = frozenset("ybnqiuxtdsogv")

_split_cache: dict[str, tuple[str, ...]] = {}


def _complete_end(sig: str, i: int, arrays: int, structs: int, allow_fd: bool) -> int:
    """Index just past the single complete type that starts at sig[i]."""
    if i >= len(sig):
        raise SignatureError(f"incomplete signature {sig!r}")
    c = sig[i]
    if c in _SINGLE or (c == "h" and allow_fd):
        return i + 1
    if c == "h":
        raise SignatureError("unix file descriptors ('h') are not supported")
    if c == "a":
        if arrays >= MAX_ARRAY_DEPTH:
            raise SignatureError(f"arrays nested too deeply in {sig!r}")
        if i + 1 < len(sig) and sig[i + 1] == "{":
            return _dict_entry_end(sig, i + 1, arrays + 1, structs, allow_fd)
        return _complete_end(sig, i + 1, arrays + 1, structs, allow_fd)
    if c == "(":
        return _struct_end(sig, i, arrays, structs, allow_fd)
    raise SignatureError(f"invalid type code {c!r} in {sig!r}")


def _dict_entry_end(sig: str, i: int, arrays: int, structs: int, allow_fd: bool) -> int:
    if structs >= MAX_STRUCT_DEPTH:
        raise SignatureError(f"structs nested too deeply in {sig!r}")
    j = i + 1
    if j >= len(sig) or not (sig[j] in _BASIC or (sig[j] == "h" and allow_fd)):
        raise SignatureError(f"dict key must be a basic type in {sig!r}")
    j = _complete_end(sig, j + 1, arrays, structs + 1, allow_fd)
    if j >= len(sig) or sig[j] != "}":
        raise SignatureError(f"dict entry must have exactly two types in {sig!r}")
    return j + 1


def _struct_end(sig: str, i: int, arrays: int, structs: int, allow_fd: bool) -> int:
    if structs >= MAX_STRUCT_DEPTH:
        raise SignatureError(f"structs nested too deeply in {sig!r}")
    j = i + 1
    if j < len(sig) and sig[j] == ")":
        raise SignatureError(f"empty struct in {sig!r}")
    while j < len(sig) and sig[j] != ")":
        j = _complete_end(sig, j, arrays, structs + 1, allow_fd)
    if j >= len(sig):
        raise SignatureError(f"unterminated struct in {sig!r}")
    return j + 1


def split_signature(sig: str, *, allow_fd: bool = False) -> tuple[str, ...]:
    """Split a signature into its single complete types, validating it on the way."""
    key = sig if not allow_fd else "\0" + sig
    cached = _split_cache.get(key)
    if cached is not None:
        return cached
    if type(sig) is not str:
        raise SignatureError(f"signature must be a str, not {type(sig).__name__}")
    if len(sig) > MAX_SIGNATURE_LEN:
        raise SignatureError(f"signature longer than {MAX_SIGNATURE_LEN} characters")
    parts = []
    i = 0
    while i < len(sig):
        j = _complete_end(sig, i, 0, 0, allow_fd)
        parts.append(sig[i:j])
        i = j
    result = tuple(parts)
    if len(_split_cache) < 4096:  # signatures come from peers too: keep the cache bounded
        _split_cache[key] = result
    return result


def is_single_type(sig: str) -> bool:
    try:
        return len(split_signature(sig)) == 1
    except SignatureError:
        return False


class Variant:
    """An explicitly typed D-Bus variant: Variant("u", 5) marshals as uint32, not int64."""

    __slots__ = ("signature", "value")

    def __init__(self, signature: str, value: Any) -> None:
        if len(split_signature(signature)) != 1:
            raise SignatureError(f"a variant holds one complete type, not {signature!r}")
        self.signature = signature
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Variant):
            return NotImplemented
        return self.signature == other.signature and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.signature)

    def __repr__(self) -> str:
        return f"Variant({self.signature!r}, {self.value!r})"


# --- name syntax (the bus disconnects a client that sends an invalid name) ------------


def _is_word(s: str, *, digits_first: bool = False, dash: bool = False) -> bool:
    if not s or not s.isascii():
        return False
    if not digits_first and s[0].isdigit():
        return False
    stripped = s.replace("_", "")
    if dash:
        stripped = stripped.replace("-", "")
    return stripped == "" or stripped.isalnum()


def is_object_path(path: str) -> bool:
    if type(path) is not str or not path.startswith("/"):
        return False
    if path == "/":
        return True
    return all(_is_word(p, digits_first=True) for p in path[1:].split("/"))


def is_interface_name(name: str) -> bool:
    if type(name) is not str or len(name) > 255:
        return False
    parts = name.split(".")
    return len(parts) >= 2 and all(_is_word(p) for p in parts)


def is_member_name(name: str) -> bool:
    return type(name) is str and len(name) <= 255 and _is_word(name)


def is_bus_name(name: str) -> bool:
    if type(name) is not str or len(name) > 255:
        return False
    if name.startswith(":"):
        parts = name[1:].split(".")
        return len(parts) >= 2 and all(_is_word(p, digits_first=True, dash=True) for p in parts)
    parts = name.split(".")
    return len(parts) >= 2 and all(_is_word(p, dash=True) for p in parts)
