"""The systemd service manager protocol: READY=1, STATUS=, WATCHDOG=1."""

from __future__ import annotations

import asyncio
import os
import socket


def notify(state: str) -> bool:
    """Send one notification if NOTIFY_SOCKET is set (run by systemd); else do nothing."""
    try:
        from systemd import daemon  # type: ignore[attr-defined]

        return bool(daemon.notify(state))
    except ImportError:
        pass
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(state.encode(), addr)
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd asked for, or None when there is no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


async def watchdog_loop(interval: float) -> None:
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
