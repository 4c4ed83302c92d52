"""Every method of the core interfaces with hypothesis-generated arguments: the answer is
a success or a named error, never a traceback; the daemon stays up and its open file
descriptors come back to their baseline."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.root

NAME = "org.ose.Provisioning1"
ROOT = "/org/ose/Provisioning1"

ALLOWED_ERRORS = {
    "org.freedesktop.DBus.Error.InvalidArgs",
    "org.freedesktop.DBus.Error.AccessDenied",
    "org.freedesktop.DBus.Error.UnknownMethod",
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.ose.Error.NotFound",
    "org.ose.Error.RateLimited",
    "org.ose.Error.Busy",
    "org.ose.Error.Failed",
    "org.ose.Error.LimitExceeded",
    "org.ose.Error.PlanDigestMismatch",
}

# D-Bus strings are UTF-8 without NUL: anything else the client library refuses to send.
CHARS = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))


def text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(CHARS, max_size=max_size)


KEYS = st.sampled_from(["limit", "state", "since", "seconds", "steps", "fail", "exclusive",
                        "bogus", "", "ü" * 3])


def variants() -> st.SearchStrategy[Variant]:
    leaf = st.one_of(
        text(40).map(lambda v: Variant("s", v)),
        st.booleans().map(lambda v: Variant("b", v)),
        st.integers(-(2**63), 2**63 - 1).map(lambda v: Variant("x", v)),
        st.integers(0, 2**32 - 1).map(lambda v: Variant("u", v)),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda v: Variant("d", v)),
        st.lists(text(5), max_size=5).map(lambda v: Variant("as", v)),
        st.sampled_from(["running", "succeeded", "queued"]).map(lambda v: Variant("s", v)),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            inner.map(lambda v: Variant("v", v)),
            st.dictionaries(text(5), inner, max_size=3).map(
                lambda v: Variant("a{sv}", v)),
        ),
        max_leaves=6,
    )


options = st.dictionaries(KEYS, variants(), max_size=4)
# Reset1's selection keys (and some it doesn't know); the daemon's root is an empty
# sandbox, and no generated plan id is ever a real plan, so nothing is removed.
SELECTION = st.dictionaries(
    st.sampled_from(["profile", "include_paths", "exclude_globs", "classes", "users",
                     "max_risk", "add_paths", "dry_run", "bogus"]),
    st.one_of(variants(), st.lists(text(12), max_size=3).map(lambda v: Variant("as", v)),
              st.sampled_from(["light", "nuclear", "../x", "cache", "safe"]).map(
                  lambda v: Variant("s", v))),
    max_size=4)
RESET = (f"{ROOT}/Reset", "org.ose.Reset1")
PLAN_IDS = st.one_of(text(20), st.sampled_from(["0123456789abcdef", "x0123456789abcdef"]))

CALLS = st.one_of(
    options.map(lambda o: (ROOT, "org.ose.Manager1", "ListJobs", "a{sv}", [o])),
    options.map(lambda o: (ROOT, "org.ose.Manager1", "GetAuditLog", "a{sv}", [o])),
    st.integers(0, 2**64 - 1).map(lambda i: (ROOT, "org.ose.Manager1", "GetJob", "t", [i])),
    st.just((ROOT, "org.ose.Manager1", "GetStatus", "", [])),
    options.map(lambda o: (f"{ROOT}/Test", "org.ose.Test1", "StartDemoJob", "a{sv}",
                           [{**o, "seconds": Variant("d", 0.0)}])),
    st.integers(1, 5).map(lambda i: (f"{ROOT}/Job/{i}", "org.ose.Job1", "Cancel", "", [])),
    # The right member with the wrong signature.
    text(20).map(lambda s: (ROOT, "org.ose.Manager1", "GetJob", "s", [s])),
    st.tuples(st.sampled_from(["Analyze", "Preview"]), SELECTION).map(
        lambda c: (*RESET, c[0], "a{sv}", [c[1]])),
    st.tuples(PLAN_IDS, st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)).map(
        lambda c: (*RESET, "GetPlanItems", "stu", list(c))),
    st.tuples(st.sampled_from(["GetPlan", "Rollback", "Resume", "GetExecution"]),
              PLAN_IDS).map(lambda c: (*RESET, c[0], "s", [c[1]])),
    st.tuples(PLAN_IDS, text(70), SELECTION).map(
        lambda c: (*RESET, "Execute", "ssa{sv}", list(c))),
)


class LoopThread:
    """One event loop and one connection for all examples: hypothesis runs synchronously."""

    def __init__(self, address: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        async def connect() -> MessageBus:
            return await MessageBus(bus_address=address).connect()

        self.bus: MessageBus = self.run(connect())

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.bus.disconnect()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def fuzz_target(ose_daemon_module) -> Iterator[tuple[object, LoopThread]]:  # type: ignore[no-untyped-def]
    d = ose_daemon_module
    client = LoopThread(d.bus_address)
    # One call first so that lazily opened descriptors (the store's WAL) are in the baseline.
    client.run(client.bus.call(Message(destination=NAME, path=ROOT,
                                       interface="org.ose.Manager1", member="GetStatus")))
    # ... and the reset engine's walker processes (a pool kept for later walks).
    job = client.run(client.bus.call(Message(
        destination=NAME, path=RESET[0], interface=RESET[1], member="Preview",
        signature="a{sv}", body=[{}]))).body[0]
    deadline = time.monotonic() + 30
    while True:
        state = client.run(client.bus.call(Message(
            destination=NAME, path=job, interface="org.freedesktop.DBus.Properties",
            member="Get", signature="ss", body=["org.ose.Job1", "State"]))).body[0].value
        if state not in ("queued", "running"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    d.fd_baseline = len(os.listdir(f"/proc/{d.pid}/fd"))
    yield d, client
    client.close()


@pytest.fixture(scope="module")
def ose_daemon_module(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    from tests.harness.daemon import DaemonFactory

    cfg_dir = tmp_path_factory.mktemp("cfg")
    cfg_dir.chmod(0o755)
    cfg = cfg_dir / "oseprovd.toml"
    # Generous rate so the fuzzer explores arguments rather than the rate limiter.
    cfg.write_text("[limits]\nrate_per_uid_per_second = 1000\nrate_burst = 1000\n")
    factory = DaemonFactory(request)
    yield factory.start(extra_args=["--test-interface", "--config", str(cfg)])
    factory.close()


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(call=CALLS)
def test_any_arguments_get_an_answer_or_a_named_error(fuzz_target, call) -> None:  # type: ignore[no-untyped-def]
    d, client = fuzz_target
    path, iface, member, sig, body = call
    msg = Message(destination=NAME, path=path, interface=iface, member=member,
                  signature=sig, body=body)
    reply = client.run(asyncio.wait_for(client.bus.call(msg), 30))
    assert reply is not None
    if reply.message_type == MessageType.ERROR:
        assert reply.error_name in ALLOWED_ERRORS, (reply.error_name, reply.body)
        text = str(reply.body[0]) if reply.body else ""
        assert "Traceback" not in text and 'File "' not in text
    assert d.running


def test_descriptors_return_to_baseline_after_fuzzing(fuzz_target) -> None:  # type: ignore[no-untyped-def]
    d, _client = fuzz_target
    fd_dir = f"/proc/{d.pid}/fd"
    deadline = time.monotonic() + 5
    while len(os.listdir(fd_dir)) > d.fd_baseline:
        assert time.monotonic() < deadline, (d.fd_baseline, os.listdir(fd_dir))
        time.sleep(0.05)
