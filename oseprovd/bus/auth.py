"""polkit authorization: CheckAuthorization with subject system-bus-name, asynchronously.

No decision is cached here. If polkitd is absent, errs or does not answer in time, the
check fails closed: only uid 0 passes.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from oseprovd.bus.caller import Caller
from oseprovd.bus.names import POLKIT_BUS_NAME, POLKIT_IFACE, POLKIT_PATH
from oseprovd.config import Limits

log = logging.getLogger(__name__)

POLKIT_ALLOW_USER_INTERACTION = 0x1


class Decision(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    CHALLENGE = "challenge"  # polkit would ask for a password, but no agent could
    ROOT_FALLBACK = "root-fallback"  # polkit unreachable; uid 0 passes
    UNREACHABLE = "polkit-unreachable"  # polkit unreachable; everyone else is refused


class PolkitAuthorizer:
    def __init__(self, bus: MessageBus, limits: Limits) -> None:
        self._bus = bus
        self._limits = limits

    async def check(self, caller: Caller, action: str, interactive: bool = True) -> Decision:
        """`interactive=False` never lets polkit ask for a password, whatever the message
        allowed (for a read that only decides what to leave out)."""
        ask = caller.interactive and interactive
        flags = POLKIT_ALLOW_USER_INTERACTION if ask else 0
        timeout = (self._limits.polkit_interactive_timeout_seconds if ask
                   else self._limits.polkit_timeout_seconds)
        msg = Message(
            destination=POLKIT_BUS_NAME, path=POLKIT_PATH, interface=POLKIT_IFACE,
            member="CheckAuthorization", signature="(sa{sv})sa{ss}us",
            body=[
                ["system-bus-name", {"name": Variant("s", caller.unique_name)}],
                action, {}, flags, "",
            ],
        )
        try:
            reply = await asyncio.wait_for(self._bus.call(msg), timeout)
        except (TimeoutError, OSError, EOFError) as exc:
            return self._unreachable(caller, action, repr(exc))
        if reply is None or reply.message_type != MessageType.METHOD_RETURN:
            why = reply.error_name if reply is not None else "no reply"
            return self._unreachable(caller, action, str(why))
        is_authorized, is_challenge, _details = reply.body[0]
        if is_authorized:
            return Decision.ALLOWED
        return Decision.CHALLENGE if is_challenge else Decision.DENIED

    def _unreachable(self, caller: Caller, action: str, why: str) -> Decision:
        log.warning("polkit did not decide %s for uid %d (%s); failing closed",
                    action, caller.uid, why)
        return Decision.ROOT_FALLBACK if caller.uid == 0 else Decision.UNREACHABLE
