"""A read-only rtnetlink client: dumps of links, addresses, routes and neighbours.

The kernel's own binary answers over an AF_NETLINK socket (what `ip` reads), decoded
with struct: no text parsing, and no netlink library. pyroute2 did this before, and
importing it cost the resident daemon 6-11 MiB for the four dumps discovery needs.

Each dump yields `NlMessage`s: the message's fixed header fields, and its attributes
by type (nested ones decoded on request with `attrs()`). Everything is the network
namespace of the calling thread.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_ROUTE = 0
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

RTM_GETLINK = 18
RTM_GETADDR = 22
RTM_GETROUTE = 26
RTM_GETNEIGH = 30

# Attribute types (linux/if_link.h, if_addr.h, rtnetlink.h, neighbour.h).
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_VLAN_ID = 1
IFLA_TUN_TYPE = 3
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_TABLE = 15
NDA_DST = 1
NDA_LLADDR = 2

# RFC 2863 operational states, as `ip` names them.
OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_RTATTR = struct.Struct("=HH")  # len, type
# The fixed part after nlmsghdr of each answer, and the names of its fields.
IFINFOMSG = (struct.Struct("=BxHiII"), ("family", "ifi_type", "index", "flags", "change"))
IFADDRMSG = (struct.Struct("=BBBBI"), ("family", "prefixlen", "flags", "scope", "index"))
RTMSG = (struct.Struct("=BBBBBBBBI"), ("family", "dst_len", "src_len", "tos", "table",
                                       "proto", "scope", "type", "flags"))
NDMSG = (struct.Struct("=BxxxiHBB"), ("family", "ifindex", "state", "flags", "type"))

RECV_SIZE = 1 << 16
_seq = itertools.count(1)


class NetlinkError(OSError):
    pass


def _align(n: int) -> int:
    return (n + 3) & ~3


def attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """The rtattrs in data[offset:] by type (the last one wins, as in `ip`)."""
    found: dict[int, bytes] = {}
    view = memoryview(data)
    end = len(view)
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(view, offset)
        if length < _RTATTR.size or offset + length > end:
            break  # malformed: keep what was read
        found[kind & NLA_TYPE_MASK] = bytes(view[offset + _RTATTR.size:offset + length])
        offset += _align(length)
    return found


@dataclass(frozen=True)
class NlMessage:
    fields: dict[str, int]
    attrs: dict[int, bytes]

    def __getitem__(self, name: str) -> int:
        return self.fields[name]

    def raw(self, kind: int) -> bytes | None:
        return self.attrs.get(kind)

    def u32(self, kind: int) -> int | None:
        raw = self.attrs.get(kind)
        return struct.unpack_from("=I", raw)[0] if raw is not None and len(raw) >= 4 else None

    def i32(self, kind: int) -> int | None:
        raw = self.attrs.get(kind)
        return struct.unpack_from("=i", raw)[0] if raw is not None and len(raw) >= 4 else None

    def text(self, kind: int) -> str | None:
        raw = self.attrs.get(kind)
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace") if raw is not None else None

    def address(self, kind: int) -> str | None:
        """An IPv4 or IPv6 address attribute as text."""
        raw = self.attrs.get(kind)
        if raw is None:
            return None
        family = {4: socket.AF_INET, 16: socket.AF_INET6}.get(len(raw))
        return socket.inet_ntop(family, raw) if family is not None else None

    def lladdr(self, kind: int) -> str | None:
        """A link-layer address as colon-separated lower-case hex (as `ip` prints it)."""
        raw = self.attrs.get(kind)
        return raw.hex(":") if raw else None


class RtNetlink:
    """One NETLINK_ROUTE socket; use as a context manager."""

    def __init__(self, timeout: float = 5.0) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_ROUTE)
        try:
            self._sock.settimeout(timeout)
            self._sock.bind((0, 0))
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> RtNetlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def dump(self, msg_type: int, request: bytes,
             header: tuple[struct.Struct, tuple[str, ...]]) -> Iterator[NlMessage]:
        """Send a dump request (the fixed part after nlmsghdr) and yield every answer."""
        seq = next(_seq) & 0xFFFFFFFF
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(request), msg_type,
                                       NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + request)
        fixed, names = header
        while True:
            data = self._sock.recv(RECV_SIZE)
            if not data:
                raise NetlinkError("the netlink socket closed during a dump")
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, mseq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size or offset + length > len(data):
                    raise NetlinkError("a truncated netlink message")
                body = offset + _NLMSGHDR.size
                if mseq == seq:
                    if kind == NLMSG_DONE:
                        return
                    if kind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, body)
                        if code:
                            raise NetlinkError(-code, os.strerror(-code))
                    elif body + fixed.size <= offset + length:
                        values = fixed.unpack_from(data, body)
                        yield NlMessage(
                            dict(zip(names, values, strict=True)),
                            attrs(data[body:offset + length], _align(fixed.size)))
                offset += _align(length)

    def links(self) -> Iterator[NlMessage]:
        return self.dump(RTM_GETLINK, IFINFOMSG[0].pack(socket.AF_UNSPEC, 0, 0, 0, 0),
                         IFINFOMSG)

    def addresses(self) -> Iterator[NlMessage]:
        return self.dump(RTM_GETADDR, IFADDRMSG[0].pack(socket.AF_UNSPEC, 0, 0, 0, 0),
                         IFADDRMSG)

    def routes(self, family: int) -> Iterator[NlMessage]:
        """Routes of every table (the kernel's dump is not filtered by table)."""
        return self.dump(RTM_GETROUTE, RTMSG[0].pack(family, 0, 0, 0, 0, 0, 0, 0, 0), RTMSG)

    def neighbours(self) -> Iterator[NlMessage]:
        return self.dump(RTM_GETNEIGH, NDMSG[0].pack(socket.AF_UNSPEC, 0, 0, 0, 0), NDMSG)
