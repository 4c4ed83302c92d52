"""Listening sockets: the test's own listeners appear with its pid; ss agrees."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator

import pytest

from oseprovd.discovery.collectors import sockets
from oseprovd.discovery.roots import SystemRoots
from tests.unit.discovery.helpers import run_tool, steady


@pytest.fixture
def listeners() -> Iterator[dict[str, int]]:
    """name -> port; name + '_inode' -> the socket's inode (fstat on the socket)."""
    opened: list[socket.socket] = []
    ports: dict[str, int] = {}
    try:
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        opened.append(tcp)
        ports["tcp4"] = tcp.getsockname()[1]
        ports["tcp4_inode"] = os.fstat(tcp.fileno()).st_ino
        if socket.has_ipv6:
            try:
                tcp6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                opened.append(tcp6)
                tcp6.bind(("::1", 0))
                tcp6.listen()
                ports["tcp6"] = tcp6.getsockname()[1]
            except OSError:
                pass  # no IPv6 loopback in this sandbox
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        opened.append(udp)
        ports["udp4"] = udp.getsockname()[1]
        yield ports
    finally:
        for s in opened:
            s.close()


def test_own_listeners_appear_with_our_pid(listeners: dict[str, int]) -> None:
    info = sockets.collect(SystemRoots())
    me = os.getpid()
    found = {(s.protocol, s.family, s.address, s.port): s for s in info.listening}
    tcp = found[("tcp", "ipv4", "127.0.0.1", listeners["tcp4"])]
    assert [o.pid for o in tcp.owners] == [me]
    assert tcp.uid == os.getuid()
    assert tcp.inode == listeners["tcp4_inode"]
    if "tcp6" in listeners:
        tcp6 = found[("tcp", "ipv6", "::1", listeners["tcp6"])]
        assert [o.pid for o in tcp6.owners] == [me]
    udp = found[("udp", "ipv4", "127.0.0.1", listeners["udp4"])]
    assert [o.pid for o in udp.owners] == [me]


def test_listeners_match_ss(listeners: dict[str, int]) -> None:
    out, info = steady(lambda: run_tool("ss", "-H", "-l", "-t", "-n"),
                       lambda: sockets.collect(SystemRoots()))
    truth = set()
    for line in out.splitlines():
        local = line.split()[3]
        addr, _, port = local.rpartition(":")
        truth.add((addr.strip("[]").split("%")[0], int(port)))
    ours = {(s.address, s.port) for s in info.listening if s.protocol == "tcp"}
    ss_norm = {("0.0.0.0" if a == "*" else a, p) for a, p in truth}
    assert ours == ss_norm


def test_decode_address_v4_and_v6() -> None:
    if sys.byteorder != "little":
        pytest.skip("sample strings are from a little-endian kernel")
    assert sockets.decode_address("0100007F:1F90") == ("127.0.0.1", 8080)
    assert sockets.decode_address("00000000000000000000000001000000:0016") == ("::1", 22)
    assert sockets.decode_address("0000000000000000FFFF00000100007F:0050") == ("127.0.0.1", 80)
