"""A tiny dbus-fast service for tests/bus/test_wire_bus.py (run as a subprocess).

Usage: python wire_echo_service.py BUS_ADDRESS
It is an independent D-Bus implementation that osectl.wire must interoperate with.
"""

from __future__ import annotations

import asyncio
import sys

from dbus_fast import Message
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method, signal

NAME = "org.ose.Test.WireEcho"
PATH = "/org/ose/Test/WireEcho"
IFACE = "org.ose.Test.WireEcho"


class Echo(ServiceInterface):
    def __init__(self) -> None:
        super().__init__(IFACE)

    @method()
    def EchoDict(self, value: "a{sv}") -> "a{sv}":
        return value

    @method()
    def EchoList(self, value: "aa{sv}") -> "aa{sv}":
        return value

    @method()
    def EchoStruct(self, value: "(sxd)") -> "(sxd)":
        return value

    @method()
    def EchoBytes(self, value: "ay") -> "ay":
        return value

    @method()
    def VariantTypes(self, value: "a{sv}") -> "a{ss}":
        """The signature each variant arrived with, as dbus-fast decoded it."""
        return {key: variant.signature for key, variant in value.items()}

    @method()
    def Fail(self):  # dbus-fast: no return annotation = empty reply
        raise DBusError("org.ose.Error.TestFailure", "it failed as asked")

    @method()
    async def Sleep(self, seconds: "d") -> "d":
        await asyncio.sleep(seconds)
        return seconds

    @method()
    def Emit(self, text: "s", extra: "a{sv}"):
        self.Ping(text, extra)

    @signal()
    def Ping(self, text: "s", extra: "a{sv}") -> "sa{sv}":
        return [text, extra]

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> "s":
        return "echo"

    @dbus_property(access=PropertyAccess.READ)
    def Count(self) -> "u":
        return 42


def flags_handler(msg: Message) -> Message | None:
    """Flags() returns the header flags of the call, which ServiceInterface hides."""
    if msg.interface == IFACE and msg.member == "Flags":
        return Message.new_method_return(msg, "u", [int(msg.flags)])
    return None


async def main(address: str) -> None:
    bus = await MessageBus(bus_address=address).connect()
    bus.export(PATH, Echo())
    bus.add_message_handler(flags_handler)
    await bus.request_name(NAME)
    await bus.wait_for_disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
