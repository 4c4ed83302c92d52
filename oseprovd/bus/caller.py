"""Who is calling: the message being handled, and its sender's credentials from the bus.

dbus-fast hands a method handler its arguments but not the message. A message handler
installed on the bus (see guard.py) records each incoming call in a ContextVar right
before dbus-fast dispatches it; the handler's task is created in that same call stack,
so it copies the context and keeps seeing its own message even when many calls from
many clients are in flight.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from oseprovd.bus.names import DBUS_BUS_NAME, DBUS_IFACE, DBUS_PATH
from oseprovd.errors import NotAuthorized

log = logging.getLogger(__name__)

current_message: ContextVar[Message | None] = ContextVar("current_message", default=None)

FLAG_ALLOW_INTERACTIVE_AUTHORIZATION = 0x4


@dataclass(frozen=True)
class Caller:
    unique_name: str
    uid: int
    pid: int
    interactive: bool  # the message allows interactive authorization


class CallerResolver:
    """Credentials per unique name, asked of the bus daemon once per connection.

    A unique name is never reused during the bus's lifetime, so the cached uid cannot
    come to belong to someone else; the entry is dropped when the name leaves the bus.
    """

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self._creds: dict[str, tuple[int, int]] = {}

    def forget(self, unique_name: str) -> None:
        self._creds.pop(unique_name, None)

    async def resolve(self, msg: Message) -> Caller:
        sender = msg.sender
        if not sender or not sender.startswith(":"):
            raise NotAuthorized("the call has no sender on the bus")
        creds = self._creds.get(sender)
        if creds is None:
            creds = await self._ask_bus(sender)
            self._creds[sender] = creds
        interactive = bool(msg.flags.value & FLAG_ALLOW_INTERACTIVE_AUTHORIZATION)
        return Caller(sender, creds[0], creds[1], interactive)

    async def _ask_bus(self, sender: str) -> tuple[int, int]:
        # GetConnectionCredentials answers uid and pid in one round trip (it is the
        # bus daemon's GetConnectionUnixUser and GetConnectionUnixProcessID together).
        reply = await self._bus.call(
            Message(
                destination=DBUS_BUS_NAME, path=DBUS_PATH, interface=DBUS_IFACE,
                member="GetConnectionCredentials", signature="s", body=[sender],
            )
        )
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            raise NotAuthorized("the bus could not tell who is calling; the caller may have "
                                "left the bus")
        creds: dict[str, Variant] = reply.body[0]
        if "UnixUserID" not in creds:
            raise NotAuthorized("the bus did not report the caller's uid")
        uid = int(creds["UnixUserID"].value)
        pid = int(creds["ProcessID"].value) if "ProcessID" in creds else 0
        return uid, pid
