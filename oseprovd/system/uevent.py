"""Kernel hot-plug events (uevents) from a NETLINK_KOBJECT_UEVENT socket.

There may be no udevd (containers, minimal systems), so the daemon listens to the kernel
itself: multicast group 1 carries the kernel's own events, the ones udev starts from.
The socket is non-blocking and read from the event loop; a burst the socket buffer can't
hold is dropped (ENOBUFS), which only means some cached answers live until their TTL.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

NETLINK_KOBJECT_UEVENT = 15
KERNEL_GROUP = 1
MAX_MESSAGE = 16384  # the kernel's uevent buffer is 2 KiB of variables; this is ample
MAX_FIELD = 256


@dataclass(frozen=True)
class UEvent:
    action: str  # add, remove, change, move, online, offline, bind, unbind
    subsystem: str
    device: str  # DEVNAME when the device has a node, else the last part of DEVPATH
    devpath: str


def parse(data: bytes) -> UEvent | None:
    """A kernel uevent ("add@/devices/...\\0ACTION=add\\0..."); None for anything else
    (libudev's own messages start with "libudev" and are not the kernel's)."""
    parts = data.split(b"\0")
    if not parts or b"@" not in parts[0] or parts[0].startswith(b"libudev"):
        return None
    env: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition(b"=")
        if sep:
            env[key.decode("ascii", "replace")] = value.decode("utf-8", "replace")[:MAX_FIELD]
    action, subsystem, devpath = env.get("ACTION"), env.get("SUBSYSTEM"), env.get("DEVPATH")
    if not action or not subsystem or not devpath:
        return None
    device = env.get("DEVNAME") or devpath.rstrip("/").rsplit("/", 1)[-1]
    return UEvent(action[:32], subsystem[:64], device, devpath)


class UEventMonitor:
    """Calls `handler(event)` on the loop for each kernel uevent, from start() to stop()."""

    def __init__(self, handler: Callable[[UEvent], None]) -> None:
        self._handler = handler
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> bool:
        """Open the socket and watch it; False (logged) when the kernel refuses."""
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_KOBJECT_UEVENT)
        except OSError as exc:
            log.warning("no hot-plug events: cannot open a uevent socket: %s", exc)
            return False
        try:
            sock.bind((0, KERNEL_GROUP))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            log.warning("no hot-plug events: cannot join the kernel's uevent group: %s", exc)
            return False
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        return True

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, (sender_pid, _groups) = self._sock.recvfrom(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # we fell behind; events were lost
                    log.warning("hot-plug events were lost (socket buffer overrun)")
                    continue
                log.error("reading hot-plug events failed: %s", exc)
                return
            if sender_pid != 0:  # only the kernel (port 0) is trusted to send these
                continue
            event = parse(data)
            if event is not None:
                try:
                    self._handler(event)
                except Exception:
                    log.exception("a hot-plug event handler failed")

    async def run(self) -> None:
        """Watch until cancelled (a task of the daemon's loop)."""
        if not self.start():
            return
        try:
            await asyncio.Event().wait()
        finally:
            self.stop()

    def stop(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
