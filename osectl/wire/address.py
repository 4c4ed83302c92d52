"""D-Bus server addresses: "unix:path=...", "unix:abstract=...", "a;b" lists, env defaults."""

from __future__ import annotations

import os

from osectl.wire.errors import BusUnreachable

DEFAULT_SYSTEM_BUS_ADDRESS = "unix:path=/run/dbus/system_bus_socket"


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS_ADDRESS


def session_bus_address() -> str:
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return "unix:path=" + escape(runtime + "/bus")
    raise BusUnreachable("session bus", "DBUS_SESSION_BUS_ADDRESS is not set")


_OPTIONALLY_ESCAPED = frozenset(
    b"-_/\\.*0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def escape(value: str) -> str:
    return "".join(chr(b) if b in _OPTIONALLY_ESCAPED else f"%{b:02x}" for b in os.fsencode(value))


def unescape(value: str, address: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x25:  # '%'
            hexpair = raw[i + 1 : i + 3]
            if len(hexpair) != 2 or not hexpair.isalnum():
                raise BusUnreachable(address, "bad %-escape in the address")
            try:
                out.append(int(hexpair, 16))
            except ValueError:
                raise BusUnreachable(address, "bad %-escape in the address") from None
            i += 3
        else:
            out.append(b)
            i += 1
    return bytes(out)


def parse_address(address: str) -> list[tuple[str, dict[str, bytes]]]:
    """[(transport, {key: unescaped value})] for each ';'-separated entry."""
    entries = []
    for entry in address.split(";"):
        if not entry:
            continue
        transport, colon, rest = entry.partition(":")
        if not colon:
            raise BusUnreachable(address, f"address entry {entry!r} has no transport")
        params: dict[str, bytes] = {}
        for pair in rest.split(","):
            if not pair:
                continue
            key, eq, value = pair.partition("=")
            if not eq:
                raise BusUnreachable(address, f"address parameter {pair!r} has no value")
            params[key] = unescape(value, address)
        entries.append((transport, params))
    if not entries:
        raise BusUnreachable(address, "empty address")
    return entries


def unix_socket_targets(address: str) -> list[bytes]:
    """Socket addresses to try in order (abstract ones start with NUL)."""
    targets = []
    for transport, params in parse_address(address):
        if transport != "unix":
            continue  # tcp, launchd, ... are not used by a system service: skip them
        if "path" in params:
            targets.append(params["path"])
        elif "abstract" in params:
            targets.append(b"\0" + params["abstract"])
        elif params.get("runtime") == b"yes":
            runtime = os.environ.get("XDG_RUNTIME_DIR")
            if runtime:
                targets.append(os.fsencode(runtime) + b"/bus")
    if not targets:
        raise BusUnreachable(address, "no unix:path or unix:abstract entry to connect to")
    return targets
