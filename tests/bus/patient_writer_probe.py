"""The probe of test_patient_writer, run in a child process: dbus-fast's failure path
leaves CPython 3.11's recursion bookkeeping skewed (a later compile() raises
"AST constructor recursion depth mismatch"), so the control case must not run inside
pytest's own process.

usage: python -m tests.bus.patient_writer_probe ADDRESS BUS_PID guarded|unguarded
prints one JSON object: {"connected": bool, "got": [[member, length], ...]}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from oseprovd.bus import patient_writer

PATH = "/org/ose/Test/Patient"
IFACE = "org.ose.Test.Patient"
BIG = 2 << 20  # far above a Unix socket's send buffer


def _signal(member: str, payload: bytes) -> Message:
    return Message.new_signal(PATH, IFACE, member, "ay", [payload])


async def _fill_then_send(address: str, pid: int,
                          guarded: bool) -> tuple[bool, list[tuple[str, int]]]:
    listener = await MessageBus(bus_address=address).connect()
    got: list[tuple[str, int]] = []
    both = asyncio.Event()

    def on_message(msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.interface == IFACE:
            got.append((msg.member, len(msg.body[0])))
            if len(got) == 2:
                both.set()

    listener.add_message_handler(on_message)
    await listener.call(Message(
        destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus", member="AddMatch", signature="s",
        body=[f"type='signal',interface='{IFACE}'"]))
    sender = await MessageBus(bus_address=address).connect()
    if guarded:
        assert patient_writer.install(sender)
    os.kill(pid, signal.SIGSTOP)
    try:
        sender.send(_signal("Big", b"x" * BIG))
        with contextlib.suppress(OSError):  # unguarded: the library closed the socket
            sender.send(_signal("Small", b"y"))
        await asyncio.sleep(0.3)  # the writer's loop turns while the bus is stopped
        still_connected = sender.connected
    finally:
        os.kill(pid, signal.SIGCONT)
    if still_connected:
        await asyncio.wait_for(both.wait(), 30)
    sender.disconnect()
    listener.disconnect()
    return still_connected, got


def main(argv: list[str]) -> None:
    address, pid, mode = argv[0], int(argv[1]), argv[2]
    connected, got = asyncio.run(_fill_then_send(address, pid, mode == "guarded"))
    print(json.dumps({"connected": connected, "got": got}))


if __name__ == "__main__":
    main(sys.argv[1:])
