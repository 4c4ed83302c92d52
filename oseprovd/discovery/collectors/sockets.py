"""Listening sockets and the processes that own them, from /proc/net and /proc/<pid>/fd.

The socket tables are those of the reader's network namespace. Owners are found by
matching socket inodes with the links in /proc/<pid>/fd (readable for every process
only as root; otherwise only the reader's own processes are named).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from pydantic import BaseModel

from oseprovd.discovery.fsread import listdir, read_attr, read_text
from oseprovd.discovery.roots import SystemRoots

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"
TABLES = (("tcp", "tcp", TCP_LISTEN), ("tcp6", "tcp", TCP_LISTEN),
          ("udp", "udp", UDP_UNCONNECTED), ("udp6", "udp", UDP_UNCONNECTED))


class SocketOwner(BaseModel):
    pid: int
    comm: str | None = None


class ListeningSocket(BaseModel):
    protocol: str  # tcp, udp
    family: str  # ipv4, ipv6
    address: str
    port: int
    uid: int
    inode: int
    owners: list[SocketOwner] = []


class SocketsInfo(BaseModel):
    listening: list[ListeningSocket] = []
    owners_complete: bool = False  # False when some processes' fds could not be read


def decode_address(hex_addr: str) -> tuple[str, int]:
    """'0100007F:1F90' -> ('127.0.0.1', 8080); the kernel prints 32-bit words in host order."""
    addr_hex, _, port_hex = hex_addr.partition(":")
    raw = bytes.fromhex(addr_hex)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped), int(port_hex, 16)
    return str(address), int(port_hex, 16)


def parse_table(text: str, protocol: str, family: str, state: str) -> list[ListeningSocket]:
    sockets: list[ListeningSocket] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != state:
            continue
        address, port = decode_address(fields[1])
        if protocol == "udp" and (port == 0 or set(fields[2]) - {"0", ":"}):
            continue  # a connected UDP socket is not listening
        sockets.append(ListeningSocket(protocol=protocol, family=family, address=address,
                                       port=port, uid=int(fields[7]), inode=int(fields[9])))
    return sockets


def owners_by_inode(proc: Path, wanted: set[int]) -> tuple[dict[int, list[SocketOwner]], bool]:
    """inode -> owning processes; and whether every process could be inspected."""
    found: dict[int, list[SocketOwner]] = {}
    complete = True
    for entry in listdir(proc):
        if not entry.isdigit():
            continue
        fd_dir = proc / entry / "fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            complete = False
            continue
        except OSError:
            continue  # exited meanwhile
        hits: set[int] = set()
        for fd in fds:
            try:
                target = os.readlink(fd_dir / fd)
            except PermissionError:
                complete = False  # e.g. a process of another user, or a sandbox's init
                break
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in wanted:
                    hits.add(inode)
        if hits:
            owner = SocketOwner(pid=int(entry), comm=read_attr(proc / entry / "comm"))
            for inode in hits:
                found.setdefault(inode, []).append(owner)
    return found, complete


def collect(roots: SystemRoots) -> SocketsInfo:
    listening: list[ListeningSocket] = []
    for table, protocol, state in TABLES:
        family = "ipv6" if table.endswith("6") else "ipv4"
        text = read_text(roots.proc / "net" / table, 64 << 20) or ""
        listening += parse_table(text, protocol, family, state)
    owners, complete = owners_by_inode(roots.proc, {s.inode for s in listening if s.inode})
    listening = [s.model_copy(update={"owners": sorted(owners.get(s.inode, []),
                                                       key=lambda o: o.pid)})
                 for s in listening]
    listening.sort(key=lambda s: (s.protocol, s.port, s.family, s.address))
    return SocketsInfo(listening=listening, owners_complete=complete)
