"""guard.permitted(): a non-raising, non-interactive polkit check for public reads that
leave sensitive fields out; it never marks the call as authorized."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dbus_fast import Message

from oseprovd.bus import guard
from oseprovd.bus.auth import Decision
from oseprovd.bus.caller import Caller


class FakeAuthorizer:
    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.asked: list[tuple[str, bool]] = []

    async def check(self, caller: Caller, action: str, interactive: bool = True) -> Decision:
        self.asked.append((action, interactive))
        return self.decision


class FakeResolver:
    def __init__(self, uid: int) -> None:
        self.uid = uid

    async def resolve(self, msg: Message) -> Caller:
        return Caller(unique_name=":1.5", uid=self.uid, pid=42, interactive=True)


def run(uid: int, decision: Decision) -> tuple[bool, FakeAuthorizer, Any]:
    authorizer = FakeAuthorizer(decision)
    ctx: Any = type("Ctx", (), {"authorizer": authorizer, "resolver": FakeResolver(uid)})()
    msg = Message(destination="a.b", path="/a", interface="a.b", member="Get")
    state = guard._CallState(ctx, msg, "a.b.Get", guard.Policy(None))
    token = guard._state.set(state)
    try:
        allowed = asyncio.run(guard.permitted("org.ose.discovery.read-sensitive"))
    finally:
        guard._state.reset(token)
    return allowed, authorizer, state


@pytest.mark.parametrize("decision,expected", [
    (Decision.ALLOWED, True), (Decision.DENIED, False), (Decision.CHALLENGE, False),
    (Decision.UNREACHABLE, False),
])
def test_non_root_gets_polkits_answer_without_interaction(decision: Decision,
                                                          expected: bool) -> None:
    allowed, authorizer, state = run(1000, decision)
    assert allowed is expected
    assert authorizer.asked == [("org.ose.discovery.read-sensitive", False)]
    assert not state.authorized and state.decision == ""  # the read stays public


def test_root_passes_without_asking() -> None:
    allowed, authorizer, _ = run(0, Decision.UNREACHABLE)
    assert allowed and authorizer.asked == []


class CapturingBus:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def call(self, msg: Message) -> Message:
        self.sent.append(msg)
        from dbus_fast import MessageType
        return Message(message_type=MessageType.METHOD_RETURN, reply_serial=1,
                       signature="(bba{ss})", body=[[False, True, {}]])


@pytest.mark.parametrize("interactive,flags", [(True, 1), (False, 0)])
def test_polkit_is_asked_with_interaction_only_when_allowed(interactive: bool,
                                                            flags: int) -> None:
    from oseprovd.bus.auth import PolkitAuthorizer
    from oseprovd.config import Limits

    bus = CapturingBus()
    who = Caller(unique_name=":1.5", uid=1000, pid=42, interactive=True)
    decision = asyncio.run(PolkitAuthorizer(bus, Limits()).check(  # type: ignore[arg-type]
        who, "org.ose.discovery.read-sensitive", interactive=interactive))
    assert decision is Decision.CHALLENGE
    assert bus.sent[0].body[3] == flags
