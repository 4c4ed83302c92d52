"""The running systemd's unit states for the discovery engine (its UnitStateSource).

The services collector runs in its own thread; it asks here, and the question is put on
the daemon's event loop, where the bus connection lives: NameHasOwner first (no systemd
on the bus, as in a container, is an answer, not an error), then the Manager's ListUnits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from oseprovd.bus.names import DBUS_BUS_NAME, DBUS_IFACE, DBUS_PATH
from oseprovd.discovery.unitstates import UnitRuntime

SYSTEMD_NAME = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
SYSTEMD_MANAGER = "org.freedesktop.systemd1.Manager"


class SystemdUnitStates:
    def __init__(self, bus: MessageBus, loop: asyncio.AbstractEventLoop) -> None:
        self.bus = bus
        self.loop = loop

    async def _call(self, destination: str, path: str, interface: str, member: str,
                    signature: str = "", body: list[object] | None = None) -> list[object]:
        reply = await self.bus.call(Message(destination=destination, path=path,
                                            interface=interface, member=member,
                                            signature=signature, body=body or []))
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            error = reply.error_name if reply is not None else "no reply"
            detail = reply.body[0] if reply is not None and reply.body else ""
            raise RuntimeError(f"{member}: {error} {detail}".rstrip())
        return list(reply.body)

    async def fetch(self) -> list[UnitRuntime] | None:
        owned = await self._call(DBUS_BUS_NAME, DBUS_PATH, DBUS_IFACE, "NameHasOwner", "s",
                                 [SYSTEMD_NAME])
        if not owned[0]:
            return None
        (units,) = await self._call(SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER, "ListUnits")
        assert isinstance(units, list)
        # a(ssssssouso): name, description, load, active, sub, following, path, job...
        return [UnitRuntime(name=u[0], description=u[1] or None, load_state=u[2],
                            active_state=u[3], sub_state=u[4]) for u in units]

    def list_units(self, timeout: float) -> list[UnitRuntime] | None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError("list_units() blocks: call it from a collector thread")
        future = asyncio.run_coroutine_threadsafe(self.fetch(), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"systemd did not answer ListUnits within {timeout:g}s") from None
