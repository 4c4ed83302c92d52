"""Small dbus-fast client helpers shared by the harness and the tests.

Errors come back as `BusError`, which (unlike dbus-fast's DBusError) pickles, so it can
cross the pipe of `users.call_as` from a client running as another uid.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
T = TypeVar("T")


class BusError(Exception):
    """An error reply: `name` is the D-Bus error name, `text` its message."""

    def __init__(self, name: str, text: str = "") -> None:
        super().__init__(f"{name}: {text}")
        self.name = name
        self.text = text

    def __reduce__(self) -> tuple[Any, ...]:
        return (BusError, (self.name, self.text))


async def connect(address: str) -> MessageBus:
    return await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()


async def call(
    bus: MessageBus,
    destination: str,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: Sequence[Any] = (),
    timeout: float | None = None,
) -> list[Any]:
    """Call a method and return the reply's body; an error reply raises BusError."""
    msg = Message(
        destination=destination,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=list(body),
    )
    reply = await asyncio.wait_for(bus.call(msg), timeout)
    assert reply is not None
    if reply.message_type == MessageType.ERROR:
        raise BusError(reply.error_name or "?", str(reply.body[0]) if reply.body else "")
    return list(reply.body)


async def dbus_call(bus: MessageBus, member: str, signature: str = "", *body: Any) -> Any:
    """Call the bus driver itself; returns the first reply value (or None)."""
    out = await call(bus, *DBUS, member, signature, body)
    return out[0] if out else None


async def owner_pid(bus: MessageBus, name: str) -> int | None:
    """The pid of the connection owning `name`, or None when nobody owns it."""
    try:
        owner = await dbus_call(bus, "GetNameOwner", "s", name)
        return int(await dbus_call(bus, "GetConnectionUnixProcessID", "s", owner))
    except BusError as e:
        if e.name == "org.freedesktop.DBus.Error.NameHasNoOwner":
            return None
        raise


async def wait_for_name(
    bus: MessageBus,
    name: str,
    timeout: float,
    *,
    pid: int | None = None,
    died: Callable[[], str | None] | None = None,
) -> None:
    """Wait until `name` has an owner (owned by process `pid`, if given).

    Readiness is the NameOwnerChanged signal, not a sleep: the match is added before
    the first check so no transition can be missed. `died` is asked between waits; a
    string from it (why the owner-to-be died) aborts the wait with RuntimeError.
    """
    changed = asyncio.Event()

    def on_message(msg: Message) -> None:
        if msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == name:
            changed.set()

    bus.add_message_handler(on_message)
    rule = (
        "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
        f"member='NameOwnerChanged',arg0='{name}'"
    )
    await dbus_call(bus, "AddMatch", "s", rule)
    deadline = time.monotonic() + timeout
    try:
        while True:
            changed.clear()
            current = await owner_pid(bus, name)
            if current is not None and (pid is None or current == pid):
                return
            if died is not None and (why := died()) is not None:
                raise RuntimeError(f"{name} never appeared: {why}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{name} did not appear on the bus within {timeout:.0f} s")
            # Wake on the signal; the short cap only serves to notice a dead process.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, 0.2))
    finally:
        bus.remove_message_handler(on_message)
        if bus.connected:
            await dbus_call(bus, "RemoveMatch", "s", rule)


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even if this thread runs a loop."""
    async def main() -> T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def wait_for_name_sync(
    address: str,
    name: str,
    timeout: float = 15.0,
    *,
    pid: int | None = None,
    died: Callable[[], str | None] | None = None,
) -> None:
    async def go() -> None:
        bus = await connect(address)
        try:
            await wait_for_name(bus, name, timeout, pid=pid, died=died)
        finally:
            bus.disconnect()

    run_sync(go)


OSE_NAME = "org.ose.Provisioning1"


def call_daemon(address: str, path: str, interface: str, member: str, signature: str = "",
                *body: Any, timeout: float = 60.0) -> list[Any]:
    """One call to the daemon on its own connection, from sync test code: the reply's
    body (an error reply raises BusError). The connection goes with the call, as a CLI
    client's would, so anything tied to the caller (a browse mount) is released."""
    async def go() -> list[Any]:
        bus = await connect(address)
        try:
            return await call(bus, OSE_NAME, path, interface, member, signature, body,
                              timeout=timeout)
        finally:
            bus.disconnect()
    return run_sync(go)


def single(reply: list[Any]) -> Any:
    """A reply body as the value it holds when it holds one, else the list."""
    return reply[0] if len(reply) == 1 else reply


def error_of(fn: Callable[..., Any], *args: Any) -> str:
    """The D-Bus error name `fn(*args)` fails with, or "ok"."""
    try:
        fn(*args)
    except BusError as e:
        return e.name
    return "ok"
