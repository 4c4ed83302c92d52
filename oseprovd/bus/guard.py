"""Every exported method goes through here: policy declaration, bounds, limits,
authorization, audit and error mapping.

A handler is declared with `@exported(action)` or `@exported(public=True)` under
dbus-fast's `@method()`. Inside, it validates its arguments into a pydantic model, then
calls `await authorize(request)`, then acts. A public method that only reads local state
may be a plain function and skip `authorize()`. A non-public handler that returns without
having authorized is a bug and answers Internal; a method without a declaration stops
the daemon at start (see `check_declarations`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dbus_fast import Message, MessageType, Variant
from dbus_fast.service import ServiceInterface
from pydantic import BaseModel

from oseprovd.bus.auth import Decision, PolkitAuthorizer
from oseprovd.bus.caller import Caller, CallerResolver, current_message
from oseprovd.bus.errors import to_dbus_error
from oseprovd.bus.names import ERROR_INVALID_ARGS, ROOT_PATH
from oseprovd.config import Limits
from oseprovd.errors import LimitExceeded, NotAuthorized, RateLimited
from oseprovd.store.audit import AuditEntry, AuditRepository

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

MSG_AUDIT = "9f2b7c1e4a6d4f0e8b3c5a7d9e1f2a4b"  # journal MESSAGE_ID of audit records


@dataclass(frozen=True)
class Policy:
    action: str | None  # None: public
    expensive: bool = False


class TokenBuckets:
    """A token bucket per uid, for methods that start work or read a lot."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[int, tuple[float, float]] = {}

    def take(self, uid: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(uid, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[uid] = (tokens, now)
            return False
        self._buckets[uid] = (tokens - 1.0, now)
        return True


@dataclass
class BusContext:
    """What every handler needs from the bus side; built once in app.py."""

    resolver: CallerResolver
    authorizer: PolkitAuthorizer
    audit: AuditRepository
    limits: Limits
    buckets: TokenBuckets
    pending: dict[str, int] = field(default_factory=dict)


@dataclass
class _CallState:
    ctx: BusContext
    msg: Message
    method: str
    policy: Policy
    caller: Caller | None = None
    authorized: bool = False
    action: str = ""
    decision: str = ""
    digest: str = ""


_state: ContextVar[_CallState | None] = ContextVar("ose_call_state", default=None)


class HasBusContext(ServiceInterface):
    ctx: BusContext


def exported(action: str | None = None, *, public: bool = False,
             expensive: bool = False) -> Callable[[F], F]:
    if (action is None) == (not public):
        raise TypeError("declare exactly one of an action or public=True")
    policy = Policy(None if public else action, expensive)

    def decorate(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            return _exported_sync(fn, policy)

        @functools.wraps(fn)
        async def wrapper(self: HasBusContext, *args: Any) -> Any:
            msg = current_message.get()
            where = f"{self.name}.{fn.__name__}"
            if msg is None:  # only possible if the message handler was not installed
                raise to_dbus_error(RuntimeError("no current message"), where)
            ctx = self.ctx
            state = _CallState(ctx, msg, where, policy)
            token = _state.set(state)
            sender = msg.sender or ""
            in_flight = ctx.pending.get(sender, 0)
            try:
                if in_flight >= ctx.limits.max_pending_calls_per_sender:
                    raise LimitExceeded(
                        f"more than {ctx.limits.max_pending_calls_per_sender} calls in flight "
                        "from this connection; wait for the answers")
                ctx.pending[sender] = in_flight + 1
                try:
                    result = await fn(self, *args)
                finally:
                    _release_pending(ctx, sender)
                if policy.action is not None and not state.authorized:
                    raise RuntimeError(f"{where} returned without authorizing")
                _audit(state, "ok")
                return result
            except BaseException as exc:
                err = to_dbus_error(exc, where)
                _audit(state, err.type)
                raise err from None
            finally:
                _state.reset(token)

        wrapper.__ose_policy__ = policy  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _exported_sync(fn: F, policy: Policy) -> F:
    """A public, cheap, local read (GetStatus, GetJob) may be a plain function: dbus-fast
    then answers it inline, without a task and the loop turns that costs. It has nothing
    to authorize, audit or rate-limit, so it only needs the error mapping."""
    if policy.action is not None or policy.expensive:
        raise TypeError(f"{fn.__name__}: only public, inexpensive methods may be synchronous")

    @functools.wraps(fn)
    def wrapper(self: HasBusContext, *args: Any) -> Any:
        try:
            return fn(self, *args)
        except BaseException as exc:
            raise to_dbus_error(exc, f"{self.name}.{fn.__name__}") from None

    wrapper.__ose_policy__ = policy  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _release_pending(ctx: BusContext, sender: str) -> None:
    left = ctx.pending.get(sender, 1) - 1
    if left <= 0:
        ctx.pending.pop(sender, None)
    else:
        ctx.pending[sender] = left


def args_digest(request: BaseModel | None) -> str:
    if request is None:
        return ""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def caller() -> Caller:
    """The caller of the method being handled (credentials from the bus daemon)."""
    state = _current()
    if state.caller is None:
        state.caller = await state.ctx.resolver.resolve(state.msg)
    return state.caller


async def authorize(request: BaseModel | None = None, *, action: str | None = None,
                    polkit: bool = True) -> Caller:
    """Authorize the current call; returns the caller. Call after validation, before acting.

    `action` overrides the declared one (a method whose action depends on its arguments);
    `polkit=False` passes without asking polkit, for a decision the handler made itself
    (a job's owner cancelling it) and that is audited as such.
    """
    state = _current()
    who = await caller()
    state.digest = args_digest(request)
    state.action = action or state.policy.action or ""
    if state.policy.expensive and not state.ctx.buckets.take(who.uid):
        state.decision = "rate-limited"
        raise RateLimited("too many requests; wait a few seconds and try again")
    if state.policy.action is None and action is None:
        state.decision = "public"
    elif not polkit:
        state.decision = "handler"
    else:
        decision = await state.ctx.authorizer.check(who, state.action)
        state.decision = decision.value
        if decision not in (Decision.ALLOWED, Decision.ROOT_FALLBACK):
            raise NotAuthorized(_denial_text(decision, who))
    state.authorized = True
    return who


async def permitted(action: str) -> bool:
    """Whether the caller holds `action`, asked without user interaction and without
    raising: for a public read that leaves sensitive fields out for callers who may not
    see them (hostnamed's Describe does this). It records nothing as authorized: the
    read stays public and unaudited. Root passes without asking (polkit grants uid 0
    every action anyway), and when polkit is unreachable only root passes."""
    who = await caller()
    if who.uid == 0:
        return True
    decision = await _current().ctx.authorizer.check(who, action, interactive=False)
    return decision is Decision.ALLOWED


def _denial_text(decision: Decision, who: Caller) -> str:
    if decision is Decision.UNREACHABLE:
        return "polkit is not reachable, so only root may do this; start polkitd or run as root"
    if decision is Decision.CHALLENGE and not who.interactive:
        return ("authentication is required; run from a session with a polkit agent "
                "(without --no-ask-password) or as root")
    return "not authorized; ask an administrator"


def _current() -> _CallState:
    state = _state.get()
    if state is None:
        raise RuntimeError("authorize() called outside an exported method")
    return state


def _audit(state: _CallState, outcome: str) -> None:
    """Non-public calls are audited, in the store and the journal; public ones are not."""
    if state.policy.action is None and state.decision in ("", "public"):
        return
    who = state.caller
    entry = AuditEntry(
        time=time.time(), sender=state.msg.sender or "", uid=who.uid if who else -1,
        pid=who.pid if who else 0, method=state.method,
        action=state.action or state.policy.action or "", args_digest=state.digest,
        decision=state.decision or "not-reached", outcome=outcome,
    )
    try:
        state.ctx.audit.add(entry)
    except Exception:
        log.exception("could not write the audit record")
    log.info(
        "%s by uid %d (%s): %s, %s", entry.method, entry.uid, entry.sender, entry.decision,
        entry.outcome,
        extra={"MESSAGE_ID": MSG_AUDIT, "OSE_ACTION": entry.action, "OSE_UID": entry.uid,
               "OSE_SENDER": entry.sender, "OSE_DECISION": entry.decision,
               "OSE_OUTCOME": entry.outcome, "OSE_ARGS_DIGEST": entry.args_digest},
    )


# --- before dispatch ------------------------------------------------------------------

def bounds_problem(value: Any, limits: Limits, depth: int = 0) -> str | None:
    """Why a decoded message body is too large or too deep, or None. Stops at the first
    problem, so a 100,000-element array is refused after one length check."""
    if depth > limits.max_depth:
        return f"arguments nested deeper than {limits.max_depth} levels"
    if isinstance(value, str):
        # UTF-8 takes at most 4 bytes a character: encode only strings that may be too long.
        if len(value) > limits.max_string_bytes // 4 and len(
                value.encode("utf-8", "surrogatepass")) > limits.max_string_bytes:
            return f"a string is longer than {limits.max_string_bytes} bytes"
        return None
    if isinstance(value, bytes):
        if len(value) > limits.max_string_bytes:
            return f"a byte array is longer than {limits.max_string_bytes} bytes"
        return None
    if isinstance(value, Variant):
        return bounds_problem(value.value, limits, depth + 1)
    if isinstance(value, dict):
        if len(value) > limits.max_array_length:
            return f"a dictionary has more than {limits.max_array_length} entries"
        for k, v in value.items():
            problem = bounds_problem(k, limits, depth + 1) or bounds_problem(v, limits, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, list):
        if len(value) > limits.max_array_length:
            return f"an array has more than {limits.max_array_length} elements"
        for v in value:
            if problem := bounds_problem(v, limits, depth + 1):
                return problem
    return None


def make_message_handler(limits: Limits) -> Callable[[Message], Message | bool]:
    """Records each incoming call for `caller()` and refuses oversized ones before
    dispatch (cheap: the body is already decoded by the bus library)."""
    root = ROOT_PATH

    def on_message(msg: Message) -> Message | bool:
        if msg.message_type is not MessageType.METHOD_CALL:
            return False
        current_message.set(msg)
        if msg.body and msg.path and msg.path.startswith(root):
            problem = bounds_problem(msg.body, limits)
            if problem:
                return Message.new_error(msg, ERROR_INVALID_ARGS, f"refused: {problem}")
        return False

    return on_message


def check_declarations(interfaces: list[ServiceInterface]) -> None:
    """Refuse to start if any exported method lacks a policy declaration."""
    missing = []
    for iface in interfaces:
        for m in ServiceInterface._get_methods(iface):
            if getattr(m.fn, "__ose_policy__", None) is None:
                missing.append(f"{iface.name}.{m.name}")
    if missing:
        raise RuntimeError("methods without a polkit action or public mark: "
                           + ", ".join(missing))


def policy_of(iface: ServiceInterface, member: str) -> Policy | None:
    for m in ServiceInterface._get_methods(iface):
        if m.name == member:
            policy: Policy | None = getattr(m.fn, "__ose_policy__", None)
            return policy
    return None
