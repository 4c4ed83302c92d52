"""Keep the daemon's bus connection when its socket is momentarily full.

dbus-fast (5.2.0, aio/message_bus.py) writes a new message at once when its queue is
empty, even while an earlier message is still half written. If the kernel's socket
buffer is full at that moment (a big reply, a bus daemon that is slow to read under
load), `send` raises BlockingIOError, which the library takes for a broken connection:
it drops the connection and the daemon stops. Seen under load with GetSoftware's
~300 KB reply; the same bug is open upstream in dbus-next (altdesktop issue 153).

The socket the writer uses is wrapped so that "would block" reads as "0 bytes sent":
the writer then waits until the socket is writable, exactly as after a partial write.
Only `send` is wrapped; the daemon does not negotiate fd passing, so the library's
`sendmsg` path is never taken.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from dbus_fast.aio import MessageBus

log = logging.getLogger("oseprovd")


class PatientSocket:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: Any, flags: int = 0) -> int:
        try:
            return self._sock.send(data, flags)
        except (BlockingIOError, InterruptedError):
            return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def install(bus: MessageBus) -> bool:
    """Wrap the connected bus's writer socket; False (and a warning) if this dbus-fast
    has no writer of that shape, in which case nothing is changed."""
    writer = getattr(bus, "_writer", None)
    sock = getattr(writer, "sock", None)
    if writer is None or not isinstance(sock, socket.socket):
        log.warning("dbus-fast has no writer socket to guard; a full socket buffer may "
                    "drop the bus connection")
        return False
    writer.sock = PatientSocket(sock)
    return True
