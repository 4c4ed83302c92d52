"""NameOwnerChanged, once: forgets callers that left and tracks polkitd's presence.

Caller-bound resources (holds, watches) register here to be released when their
caller leaves the bus.
"""

from __future__ import annotations

from collections.abc import Callable

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from oseprovd.bus.names import DBUS_BUS_NAME, DBUS_IFACE, DBUS_PATH, POLKIT_BUS_NAME

MATCH = (f"type='signal',sender='{DBUS_BUS_NAME}',interface='{DBUS_IFACE}',"
         f"member='NameOwnerChanged',path='{DBUS_PATH}'")


class NameWatch:
    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self.polkit_owned = False
        self.polkit_activatable = False
        self._on_vanished: list[Callable[[str], None]] = []

    @property
    def polkit_reachable(self) -> bool:
        return self.polkit_owned or self.polkit_activatable

    def on_vanished(self, callback: Callable[[str], None]) -> None:
        self._on_vanished.append(callback)

    async def start(self) -> None:
        self._bus.add_message_handler(self._handle)
        await self._call("AddMatch", "s", [MATCH])
        reply = await self._call("NameHasOwner", "s", [POLKIT_BUS_NAME])
        self.polkit_owned = bool(reply and reply.body[0])
        reply = await self._call("ListActivatableNames", "", [])
        self.polkit_activatable = bool(reply and POLKIT_BUS_NAME in reply.body[0])

    async def _call(self, member: str, sig: str, body: list[object]) -> Message | None:
        reply = await self._bus.call(Message(
            destination=DBUS_BUS_NAME, path=DBUS_PATH, interface=DBUS_IFACE, member=member,
            signature=sig, body=body))
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            return None
        return reply

    def _handle(self, msg: Message) -> bool:
        if (msg.message_type is MessageType.SIGNAL and msg.member == "NameOwnerChanged"
                and msg.sender == DBUS_BUS_NAME and msg.path == DBUS_PATH):
            name, _old, new = msg.body
            if name == POLKIT_BUS_NAME:
                self.polkit_owned = bool(new)
            elif name.startswith(":") and not new:
                for callback in self._on_vanished:
                    callback(name)
        return False
