"""The tuning engine: plan, apply, verify, revert, recover, recommend, hold.

Every original value is in the journal (fsynced) before its knob is written, so a
process killed at any point can be rolled back by recover(). An apply journals its whole
plan at once: one "apply-begin" record with the original of every knob it is about to
change (after a switch has put the old profile's leftovers back, those originals come in
one "originals" record), then it writes, then one "apply-commit" record. A revert is
"revert-begin", the restores, "revert-commit". Nothing is journaled per knob: rolling
back restores every saved original, and restoring one that was never changed, or was
already put back, writes nothing (or the same bytes again), so the result is exact
wherever the process died. The journal is compacted to one "state" entry (the active
profile, its targets and the originals still to restore) when it grows large.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from oseprovd import errors
from oseprovd.tuning import sysctlfile
from oseprovd.tuning.facts import MachineFacts
from oseprovd.tuning.families import KnobFactory
from oseprovd.tuning.journal import Journal
from oseprovd.tuning.knob import DriftItem, KnobOutcome, PlanItem, Setting
from oseprovd.tuning.models import (
    ApplyResult,
    Candidate,
    HoldInfo,
    Plan,
    ProfileInfo,
    Recommendation,
    RecoveryResult,
    RestoreOutcome,
    RevertResult,
    VerifyResult,
)
from oseprovd.tuning.network import ModuleLoader
from oseprovd.tuning.profiles import ProfileCatalog, check_name
from oseprovd.tuning.roots import TuningRoots

DEFAULT_PROFILE = "balanced"
MAX_HOLDS = 64
NO_SYSCTL_APPLIES = "no sysctl value of this profile applies on this machine"
# Compact the journal to one state entry beyond this size: some 50 switches.
COMPACT_AT = 192 << 10


@dataclass
class TuningState:
    """What the journal says: the active profile and what it changed."""

    active: str | None = None
    targets: dict[str, str] = field(default_factory=dict)
    originals: dict[str, dict[str, Any]] = field(default_factory=dict)  # capture order
    pending: str | None = None  # "apply" or "revert" when one did not finish
    pending_profile: str | None = None


def replay(entries: list[tuple[str, dict[str, Any]]]) -> TuningState:
    st = TuningState()
    for step, data in entries:
        if step == "state":
            st = TuningState(
                active=data.get("profile"),
                targets=dict(data.get("targets", {})),
                originals={k: v for k, v in data.get("originals", [])},
            )
        elif step == "apply-begin":
            st.pending, st.pending_profile = "apply", data.get("profile")
            _add_originals(st, data.get("originals", []))
        elif step == "originals":
            _add_originals(st, data["originals"])
        elif step == "original":  # one per knob, from before the plan was one record
            st.originals.setdefault(data["knob"], data["saved"])
        elif step == "apply-commit":
            st.active, st.targets = data["profile"], dict(data["targets"])
            st.pending = st.pending_profile = None
            for knob_id in data.get("dropped", []):
                st.originals.pop(knob_id, None)
        elif step == "revert-begin":
            st.pending, st.pending_profile = "revert", st.active
        elif step == "restored":  # one per knob, from before commits listed them
            st.originals.pop(data["knob"], None)
            st.targets.pop(data["knob"], None)
        elif step in ("revert-commit", "revert-partial"):
            st.active, st.targets = None, {}
            st.pending = st.pending_profile = None
            if step == "revert-commit":
                st.originals = {}
            for knob_id in data.get("restored", []):
                st.originals.pop(knob_id, None)
    return st


def _add_originals(st: TuningState, pairs: list[list[Any]]) -> None:
    """Originals taken in capture order, last (as the engine holds them: a leftover put
    back and taken again moves to the end; restores go in reverse order)."""
    for knob_id, saved in pairs:
        st.originals.pop(knob_id, None)
        st.originals[knob_id] = saved


def snapshot(st: TuningState) -> list[tuple[str, dict[str, Any]]]:
    if st.active is None and not st.originals:
        return []
    return [("state", {
        "profile": st.active,
        "targets": st.targets,
        "originals": [[k, v] for k, v in st.originals.items()],
    })]


def _digest(items: list[PlanItem]) -> str:
    body = json.dumps([i.model_dump() for i in items], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _power_refusal(
    facts: MachineFacts, blocked: list[str], reverted: str | None = None
) -> errors.Busy:
    done = f" {reverted} was reverted." if reverted else ""
    return errors.Busy(
        f"{', '.join(facts.power_managers)} is active and manages CPU power; tuning will "
        f"not fight it ({', '.join(blocked)}).{done} Stop it, or apply with the skip-power "
        "option to leave power settings alone."
    )


class TuningEngine:
    def __init__(
        self,
        roots: TuningRoots,
        journal: Journal,
        catalog: ProfileCatalog,
        loader: ModuleLoader,
        disk_devices: list[str] | None = None,
    ) -> None:
        """disk_devices: glob patterns of the block devices to tune (default: all real
        disks; loop, ram and zram devices only when named here)."""
        self.journal = journal
        self.catalog = catalog
        self.knobs = KnobFactory(roots, loader, disk_devices)
        self._lock = threading.RLock()
        self._holds: dict[int, HoldInfo] = {}
        self._next_cookie = 1
        self._base: str | None = None  # what the user chose, restored when holds end
        self._writers: ThreadPoolExecutor | None = None  # for files written alongside

    @contextlib.contextmanager
    def _dirs(self) -> Iterator[None]:
        """One operation's many knob reads and writes resolve each directory once."""
        roots = self.knobs.roots
        with roots.proc.cached_dirs(), roots.sys.cached_dirs(), roots.target.cached_dirs():
            yield

    # ---- reading -------------------------------------------------------------------

    def state(self) -> TuningState:
        return replay(self.journal.entries())

    @property
    def active_profile(self) -> str | None:
        return self.state().active

    def list_profiles(self) -> list[ProfileInfo]:
        return [self.get_profile(n) for n in self.catalog.names()]

    def get_profile(self, name: str) -> ProfileInfo:
        p = self.catalog.get(name)
        return ProfileInfo(name=p.name, description=p.meta.description, origin=p.origin,
                           includes=self.catalog.includes(name), priority=p.meta.priority)

    def plan(self, profile: str, facts: MachineFacts, skip_power: bool = False) -> Plan:
        with self._dirs():
            return self._plan(profile, facts, skip_power, self.state().active)[0]

    def _plan(
        self, profile: str, facts: MachineFacts, skip_power: bool, previous: str | None
    ) -> tuple[Plan, list[Setting], list[str]]:
        check_name(profile)
        settings = self.knobs.expand(profile, self.catalog.resolve(profile, facts))
        blocked: list[str] = []
        items = [self._plan_item(s, facts, skip_power, blocked) for s in settings]
        if any(s.knob.family == "sysctl" for s in settings):
            # The sysctl values that apply here also go to sysctl.d, to hold at boot.
            values = {i.knob.removeprefix("sysctl:"): i.target for i in items
                      if i.family == "sysctl" and i.applicable}
            file = self.knobs.sysctl_file(profile, values)
            item = self._plan_item(file, facts, skip_power, blocked)
            if not values:
                item = item.model_copy(update={"applicable": False, "change": False,
                                               "reason": NO_SYSCTL_APPLIES})
            settings.append(file)
            items.append(item)
        plan = Plan(profile=profile, items=items, digest=_digest(items),
                    previous_profile=previous if previous != profile else None)
        return plan, settings, blocked

    @staticmethod
    def _plan_item(
        s: Setting, facts: MachineFacts, skip_power: bool, blocked: list[str]
    ) -> PlanItem:
        current = s.knob.read()
        reason = ""
        if current is None:
            reason = getattr(s.knob, "reason", "does not exist on this machine")
        else:
            reason = s.knob.not_applicable_reason(s.target) or ""
        applicable = not reason
        change = applicable and not s.knob.same(current, s.target)
        if change and s.knob.power and facts.power_managers:
            managers = ", ".join(facts.power_managers)
            reason = f"managed by {managers}: left alone"
            applicable = change = False
            if not skip_power:
                blocked.append(s.knob.id)
        return PlanItem(knob=s.knob.id, family=s.knob.family, current=current,
                        target=s.target, applicable=applicable, change=change,
                        reason=reason, source=s.source)

    def verify(self) -> VerifyResult:
        with self._dirs():
            return self._verify()

    def _verify(self) -> VerifyResult:
        st = self.state()
        items: list[DriftItem] = []
        for knob_id, target in st.targets.items():
            knob = self.knobs.from_id(knob_id)
            current = knob.read()
            if current is None:
                status = "not-applicable"
            else:
                status = "ok" if knob.same(current, target) else "drifted"
            items.append(DriftItem(knob=knob_id, target=target, current=current, status=status))
        return VerifyResult(profile=st.active, items=items,
                            drifted=sum(i.status == "drifted" for i in items))

    def recommend(self, facts: MachineFacts) -> Recommendation:
        candidates: list[Candidate] = []
        for name in self.catalog.names():
            meta = self.catalog.get(name).meta
            if meta.recommend is None:
                continue
            reasons = meta.recommend.explain(facts)
            candidates.append(Candidate(profile=name, priority=meta.priority,
                                        matched=all(r.ok for r in reasons), reasons=reasons))
        candidates.sort(key=lambda c: (-c.priority, c.profile))
        best = next((c for c in candidates if c.matched), None)
        if best is None:
            return Recommendation(profile=DEFAULT_PROFILE, reasons=[], candidates=candidates,
                                  summary=f"{DEFAULT_PROFILE}: no more specific profile fits")
        why = "; ".join(f"{r.fact} is {r.value} ({r.expected})" for r in best.reasons)
        return Recommendation(profile=best.profile, reasons=best.reasons, candidates=candidates,
                              summary=f"{best.profile}: {why or 'the default'}")

    # ---- changing ------------------------------------------------------------------

    def apply(
        self,
        profile: str,
        facts: MachineFacts,
        dry_run: bool = False,
        skip_power: bool = False,
        expected_digest: str | None = None,
    ) -> ApplyResult:
        """Apply a profile (user's choice: this ends any holds)."""
        with self._lock, self._dirs():
            result = self._apply(profile, facts, dry_run, skip_power, expected_digest)
            if not dry_run:
                self._holds.clear()
                self._base = profile
            return result

    def _apply(
        self,
        profile: str,
        facts: MachineFacts,
        dry_run: bool,
        skip_power: bool,
        expected_digest: str | None,
    ) -> ApplyResult:
        st = self.state()
        if not dry_run and st.pending:
            self._recover(st)
            st = self.state()
        plan, settings, blocked = self._plan(profile, facts, skip_power, st.active)
        if dry_run:
            return ApplyResult(profile=profile, dry_run=True, plan=plan)
        if blocked:
            raise _power_refusal(facts, blocked)
        if expected_digest is not None and expected_digest != plan.digest:
            raise errors.InvalidArguments(
                "the machine changed since this plan was shown; preview it again")
        reverted: str | None = None
        if st.originals and st.active != profile and facts.power_managers:
            # Another power manager is active: revert the old profile fully first, so
            # that what it set is not kept against the other manager's will, and judge
            # the new plan on the state that leaves.
            result = self._revert(st)
            if not result.complete:
                raise errors.OseError(
                    f"could not revert profile {st.active} before switching; "
                    "see Verify and try Revert again")
            reverted, st = st.active, self.state()
            plan, settings, blocked = self._plan(profile, facts, skip_power, st.active)
            if blocked:
                raise _power_refusal(facts, blocked, reverted)
        elif st.active is not None and st.active != profile:
            reverted = st.active

        txn = uuid.uuid4().hex
        targets = {i.knob: i.target for i in plan.items if i.applicable}
        work = zip(settings, plan.items, strict=True)
        pairs = [(s, i) for s, i in work if i.applicable]
        had = list(st.originals)
        # A switch leaves nothing of the old profile: a knob the new one does not set, or
        # sets to another value, goes back to its original first (undoing side effects
        # such as a loaded module). A knob both set alike is left as it is, keeping the
        # original from before either: a full revert would write it twice, and an I/O
        # scheduler change alone costs the kernel ~20 ms. The same path serves the same
        # profile applied again after the facts changed. One that cannot be restored now
        # keeps its original for the next revert.
        leftovers = [k for k in reversed(st.originals)
                     if k not in targets or (st.targets.get(k, targets[k]) != targets[k]
                                             and self._restores_first(k))]
        with self._preparing(pairs) as prepared:
            befores, fresh, steady, restored, slow = self._begin(
                txn, profile, targets, pairs, leftovers, st, reverted)
            futures.wait(prepared)  # before any file is written
            try:
                outcomes = self._write_all(txn, profile, settings, plan.items, targets, st,
                                           befores, steady, set(fresh) | restored)
            finally:
                futures.wait(slow.values())  # none may race a later recovery
        self._settle(slow, targets, st, reverted)
        dropped = sorted(set(had).union(fresh).difference(st.originals))
        self.journal.record("apply-commit", {"txn": txn, "profile": profile,
                                             "targets": targets, "dropped": dropped})
        self._compact(st, profile, targets)
        return ApplyResult(profile=profile, dry_run=False, plan=plan, outcomes=outcomes,
                           reverted_previous=reverted,
                           complete=all(o.status in ("changed", "unchanged", "not-applicable")
                                        for o in outcomes))

    def _begin(
        self, txn: str, profile: str, targets: dict[str, str],
        pairs: list[tuple[Setting, PlanItem]], leftovers: list[str], st: TuningState,
        reverted: str | None,
    ) -> tuple[dict[str, str | None], dict[str, dict[str, Any]], dict[str, str | None],
               set[str], dict[str, Future[tuple[str, str, str | None]]]]:
        """Journal the plan and put the old profile's leftovers back: what _capture
        returns, the leftovers restored that the new profile sets, and the leftover
        files still being put back."""
        begin = {"txn": txn, "profile": profile, "targets": targets}
        if not self._restores_may_move(leftovers, pairs, st):
            # The new originals are read now and go in the begin record: one fsync. The
            # leftover files are put back while the new values are written (nothing
            # new depends on them).
            befores, fresh, steady = self._capture(pairs, st, read_again=False)
            self.journal.record("apply-begin", {**begin, "originals": list(fresh.items())})
            st.originals.update(fresh)
            restored, slow = self._restore_leftovers(leftovers, targets, st, reverted)
            for knob_id in restored:
                befores.pop(knob_id, None)  # read again: it may be at its target now
                steady.pop(knob_id, None)
        else:
            # A restore can move a coupled value (vm.dirty_bytes zeroes vm.dirty_ratio):
            # the new originals are read once the leftovers are back, and journaled in
            # a second record before anything new is written.
            self.journal.record("apply-begin", begin)
            restored, slow = self._restore_leftovers(leftovers, targets, st, reverted)
            self._settle(slow, targets, st, reverted)
            slow = {}
            befores, fresh, steady = self._capture(pairs, st, read_again=True)
            if fresh:
                self.journal.record("originals", {"txn": txn, "originals": list(fresh.items())})
            st.originals.update(fresh)
        return befores, fresh, steady, restored, slow

    @contextlib.contextmanager
    def _preparing(
        self, pairs: list[tuple[Setting, PlanItem]]
    ) -> Iterator[list[Future[None]]]:
        """The new text of each file to write goes to its temp file (fsynced, invisible)
        while the begin record is journaled: the two fsyncs share the file system's
        commit, and writing the file is then a rename. The caller waits for them before
        it writes; whatever was not used is removed at the end."""
        knobs = [s.knob for s, i in pairs
                 if s.knob.slow_write and not s.knob.same(i.current, s.target)]
        jobs = [self._pool().submit(s.knob.prepare, s.target) for s, i in pairs
                if s.knob in knobs]
        try:
            yield jobs
        finally:
            futures.wait(jobs)
            for knob in knobs:
                knob.discard_prepared()

    def _restores_may_move(
        self, leftovers: list[str], pairs: list[tuple[Setting, PlanItem]], st: TuningState
    ) -> bool:
        """Whether putting a leftover back may change the value of a knob whose original
        is still to be taken (see Knob.coupling). A knob with an original already (a
        leftover itself, or set alike by both profiles) keeps that one."""
        if not leftovers:
            return False
        groups = {self._coupling(k) for k in leftovers}
        if "*" in groups:
            return True
        groups.discard("")
        return any(s.knob.coupling == "*" or s.knob.coupling in groups
                   for s, _ in pairs if s.knob.id not in st.originals)

    def _coupling(self, knob_id: str) -> str:
        try:
            return self.knobs.from_id(knob_id).coupling
        except (ValueError, errors.OseError):
            return "*"

    def _restore_leftovers(
        self, leftovers: list[str], targets: dict[str, str], st: TuningState,
        reverted: str | None,
    ) -> tuple[set[str], dict[str, Future[tuple[str, str, str | None]]]]:
        """Put the old profile's leftovers back. Returns the ones restored that the new
        profile sets too (their originals stay), and the files being put back alongside
        (see _settle). A leftover the new profile does not set leaves the originals once
        restored."""
        slow: dict[str, Future[tuple[str, str, str | None]]] = {}
        status: dict[str, str] = {}
        try:
            for knob_id in leftovers:
                if self._slow(knob_id):
                    slow[knob_id] = self._pool().submit(self._restore_one, knob_id,
                                                        st.originals[knob_id])
                else:
                    status[knob_id] = self._restore_one(knob_id, st.originals[knob_id])[0]
        except BaseException:
            futures.wait(slow.values())
            raise
        restored: set[str] = set()
        try:
            for knob_id, result in status.items():
                self._restored(knob_id, result, targets, st, reverted, restored)
        except BaseException:
            futures.wait(slow.values())
            raise
        return restored, slow

    def _settle(
        self, slow: dict[str, Future[tuple[str, str, str | None]]], targets: dict[str, str],
        st: TuningState, reverted: str | None,
    ) -> None:
        """Wait for the leftover files being put back, and account for them."""
        futures.wait(slow.values())
        for knob_id, future in slow.items():
            self._restored(knob_id, future.result()[0], targets, st, reverted, set())

    @staticmethod
    def _restored(knob_id: str, status: str, targets: dict[str, str], st: TuningState,
                  reverted: str | None, restored: set[str]) -> None:
        if status == "failed":
            if reverted is not None:
                raise errors.OseError(
                    f"could not restore {knob_id} of profile {reverted} before "
                    "switching; see Verify and try Revert again")
        elif knob_id in targets:
            restored.add(knob_id)
        else:
            del st.originals[knob_id]

    def _slow(self, knob_id: str) -> bool:
        try:
            return self.knobs.from_id(knob_id).slow_write
        except (ValueError, errors.OseError):
            return False

    def _capture(
        self, pairs: list[tuple[Setting, PlanItem]], st: TuningState, read_again: bool
    ) -> tuple[dict[str, str | None], dict[str, dict[str, Any]], dict[str, str | None]]:
        """Before anything is written: the current value of each knob that will change,
        the original of each that no profile changed yet, and the value of each
        uncoupled knob found at its target (no other write can move it: no need to read
        it again). The sysctl.d file's text
        is only known once the sysctl values were written: its original is taken now if
        the planned text differs from the file. `read_again`: after restores, when the
        values the plan read may have moved."""
        befores: dict[str, str | None] = {}
        fresh: dict[str, dict[str, Any]] = {}
        steady: dict[str, str | None] = {}
        for s, item in pairs:
            before = s.knob.read() if read_again else item.current
            if s.knob.id == sysctlfile.KNOB_ID or s.knob.same(before, s.target):
                if not s.knob.coupling:
                    steady[s.knob.id] = before
                if s.knob.same(before, s.target):
                    continue
            else:
                befores[s.knob.id] = before
            if s.knob.id not in st.originals:
                fresh[s.knob.id] = s.knob.capture_known(before)
        return befores, fresh, steady

    def _compact(self, st: TuningState, profile: str | None, targets: dict[str, str]) -> None:
        """Replace the journal by one state entry once it has grown: appends are one
        fsync each, a replacement two."""
        if self.journal.size() > COMPACT_AT:
            self.journal.replace(snapshot(TuningState(active=profile, targets=targets,
                                                      originals=st.originals)))

    def _restores_first(self, knob_id: str) -> bool:
        """Whether a switch puts this knob's original back before writing the new value
        (not for a file replaced whole by one rename)."""
        try:
            return self.knobs.from_id(knob_id).restore_before_switch
        except (ValueError, errors.OseError):
            return True

    def _sysctl_file_took(
        self,
        profile: str,
        s: Setting,
        item: PlanItem,
        outcomes: list[KnobOutcome],
        targets: dict[str, str],
        st: TuningState,
    ) -> tuple[Setting, PlanItem]:
        """The sysctl.d file holds only the values that took in the kernel: a key the
        kernel refused at write time would fail again at every boot."""
        took = {o.knob.removeprefix("sysctl:"): o.target for o in outcomes
                if o.knob.startswith("sysctl:") and o.status in ("changed", "unchanged")}
        if took:
            text = sysctlfile.render(profile, took)
            targets[s.knob.id] = text
            return Setting(s.knob, text, s.source), item.model_copy(update={"target": text})
        del targets[s.knob.id]
        # An original kept for a switch: the old profile's file must go now. (One taken
        # in this apply is dropped at the commit: the file was not touched.)
        if (s.knob.id in st.originals
                and self._restore_one(s.knob.id, st.originals[s.knob.id])[0] != "failed"):
            del st.originals[s.knob.id]
        return s, item.model_copy(update={"applicable": False, "change": False,
                                          "reason": "no sysctl value took"})

    def _write_all(
        self,
        txn: str,
        profile: str,
        settings: list[Setting],
        items: list[PlanItem],
        targets: dict[str, str],
        st: TuningState,
        befores: dict[str, str | None],
        steady: dict[str, str | None],
        droppable: set[str],
    ) -> list[KnobOutcome]:
        """Write every knob that needs it, in order; their outcomes."""
        slots: list[KnobOutcome | Future[KnobOutcome]] = []
        try:
            for setting, planned in zip(settings, items, strict=True):
                s, i = setting, planned
                if s.knob.id == sysctlfile.KNOB_ID and i.applicable:
                    done = [o for o in slots if isinstance(o, KnobOutcome)]
                    s, i = self._sysctl_file_took(profile, s, i, done, targets, st)
                slot = self._prepare_one(txn, s, i, st, befores, steady, droppable)
                if slot is not None:
                    slots.append(slot)
                elif s.knob.slow_write:
                    # A file written with two fsyncs: written alongside the other knobs
                    # and files (concurrent fsyncs share the file system's journal
                    # commits).
                    slots.append(self._pool().submit(self._write_one, s, i,
                                                     befores[s.knob.id]))
                else:
                    slots.append(self._write_one(s, i, befores[s.knob.id]))
        finally:
            # Whatever happened, no write is still going on when this returns (a
            # recovery must not race one).
            futures.wait([o for o in slots if not isinstance(o, KnobOutcome)])
        return [o if isinstance(o, KnobOutcome) else o.result() for o in slots]

    def _prepare_one(
        self,
        txn: str,
        s: Setting,
        item: PlanItem,
        st: TuningState,
        befores: dict[str, str | None],
        steady: dict[str, str | None],
        droppable: set[str],
    ) -> KnobOutcome | None:
        """The outcome of a knob that needs no write; None when it must be written (its
        original is journaled by then). Fills in befores for the write. `droppable`:
        originals taken or put back in this apply, to forget if the knob is left alone."""
        knob = s.knob
        if not item.applicable:
            return KnobOutcome(knob=knob.id, target=s.target, before=item.current,
                               after=item.current, status="not-applicable", detail=item.reason)
        if knob.id in befores:
            return None  # read just before the plan was journaled
        # Found at its target then; read again if writing another knob may have moved it
        # (and the sysctl.d file's text was only known now).
        before = steady[knob.id] if knob.id in steady else knob.read()
        if knob.same(before, s.target):
            if knob.id in droppable:
                del st.originals[knob.id]  # at its original: dropped at the commit
            return KnobOutcome(knob=knob.id, target=s.target, before=before, after=before,
                               status="unchanged")
        if knob.id not in st.originals:
            saved = knob.capture()
            self.journal.record("originals", {"txn": txn, "originals": [[knob.id, saved]]})
            st.originals[knob.id] = saved
        befores[knob.id] = before
        return None

    @staticmethod
    def _write_one(s: Setting, item: PlanItem, before: str | None) -> KnobOutcome:
        knob = s.knob
        try:
            knob.write(s.target)
        except OSError as e:
            return KnobOutcome(knob=knob.id, target=s.target, before=before, after=knob.read(),
                               status="failed", detail=f"the kernel refused it: {e.strerror}")
        except errors.OseError as e:
            return KnobOutcome(knob=knob.id, target=s.target, before=before, after=knob.read(),
                               status="failed", detail=str(e))
        after = knob.read()
        took = knob.same(after, s.target)
        return KnobOutcome(knob=knob.id, target=s.target, before=before, after=after,
                           status="changed" if took else "did-not-take",
                           detail="" if took else "read back a different value")

    def _pool(self) -> ThreadPoolExecutor:
        if self._writers is None:
            self._writers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tuning-file")
        return self._writers

    def revert(self) -> RevertResult:
        """Restore every original value, the exact bytes that were there."""
        with self._lock, self._dirs():
            self._holds.clear()
            self._base = None
            return self._revert(self.state())

    def _revert(self, st: TuningState) -> RevertResult:
        if not st.originals and st.active is None:
            return RevertResult(profile=None, outcomes=[], complete=True)
        txn = uuid.uuid4().hex
        self.journal.record("revert-begin", {"txn": txn, "profile": st.active})
        failed: dict[str, str] = {}
        outcomes: dict[str, RestoreOutcome] = {}
        # Reverse order: EPP before governor and so on; a second pass catches knobs
        # that depend on one restored later (intel_pstate refuses EPP under
        # "performance").
        # Files (which depend on nothing) are put back alongside, in the first pass.
        for attempt in range(2):
            slow: dict[str, Future[tuple[str, str, str | None]]] = {}
            try:
                for knob_id, saved in reversed(list(st.originals.items())):
                    if knob_id in outcomes and knob_id not in failed:
                        continue
                    if attempt == 0 and self._slow(knob_id):
                        slow[knob_id] = self._pool().submit(self._restore_one, knob_id, saved)
                        continue
                    self._note(knob_id, self._restore_one(knob_id, saved), outcomes, failed)
            finally:
                futures.wait(slow.values())
            for knob_id, future in slow.items():
                self._note(knob_id, future.result(), outcomes, failed)
            if not failed:
                break
        complete = not failed
        restored = sorted(k for k in outcomes if k not in failed)
        self.journal.record("revert-commit" if complete else "revert-partial",
                            {"txn": txn, "restored": restored})
        self._compact(TuningState(originals={k: v for k, v in st.originals.items()
                                             if k in failed}), None, {})
        return RevertResult(profile=st.active, outcomes=list(outcomes.values()),
                            complete=complete)

    @staticmethod
    def _note(knob_id: str, result: tuple[str, str, str | None],
              outcomes: dict[str, RestoreOutcome], failed: dict[str, str]) -> None:
        status, detail, original = result
        outcomes[knob_id] = RestoreOutcome(knob=knob_id, original=original, status=status,
                                           detail=detail)
        if status != "failed":
            failed.pop(knob_id, None)
        else:
            failed[knob_id] = detail

    def _restore_one(self, knob_id: str, saved: dict[str, Any]) -> tuple[str, str, str | None]:
        """(status, detail, original) of putting one knob back."""
        try:
            knob = self.knobs.from_id(knob_id)
        except (ValueError, errors.OseError) as e:
            return "failed", f"unknown knob in the journal: {e}", None
        original = knob.display(saved)
        if knob.read() is None and saved.get("value") is not None:
            # The device or module went away: nothing is left to restore.
            return "gone", "no longer exists on this machine", original
        try:
            knob.restore(saved)
        except (OSError, errors.OseError) as e:
            return "failed", str(e), original
        if not knob.is_restored(saved):
            return "failed", "read back a different value", original
        return "restored", "", original

    def recover(self) -> RecoveryResult:
        """At start: roll back an apply that did not finish, or finish a revert."""
        with self._lock, self._dirs():
            return self._recover(self.state())

    def _recover(self, st: TuningState) -> RecoveryResult:
        for file in self.knobs.managed_files():
            file.remove_stale_temps()  # from a process killed inside a write
        if st.pending is None:
            return RecoveryResult(action="none", profile=st.active)
        action = "rolled-back" if st.pending == "apply" else "finished-revert"
        profile = st.pending_profile
        return RecoveryResult(action=action, profile=profile, revert=self._revert(st))

    # ---- holds ---------------------------------------------------------------------

    def holds(self) -> list[HoldInfo]:
        with self._lock:
            return list(self._holds.values())

    def hold(self, profile: str, reason: str, app_id: str, facts: MachineFacts) -> HoldInfo:
        """Apply `profile` until release(cookie); the bus layer releases a hold when its
        caller leaves the bus. The most recent hold wins."""
        check_name(profile)
        self.catalog.get(profile)
        if len(reason) > 200 or len(app_id) > 200:
            raise errors.InvalidArguments("reason and app_id are at most 200 characters")
        with self._lock, self._dirs():
            if len(self._holds) >= MAX_HOLDS:
                raise errors.LimitExceeded(f"at most {MAX_HOLDS} holds at a time")
            if not self._holds:
                self._base = self.state().active
            self._apply(profile, facts, False, False, None)
            info = HoldInfo(cookie=self._next_cookie, profile=profile, reason=reason,
                            app_id=app_id)
            self._next_cookie += 1
            self._holds[info.cookie] = info
            return info

    def release(self, cookie: int, facts: MachineFacts) -> str | None:
        """End a hold; the profile now in effect (the next hold's, or the user's choice)."""
        with self._lock, self._dirs():
            if self._holds.pop(cookie, None) is None:
                raise errors.NotFound(f"no hold with cookie {cookie}")
            effective = (list(self._holds.values())[-1].profile if self._holds
                         else self._base)
            if effective != self.state().active:
                if effective is None:
                    self._revert(self.state())
                else:
                    self._apply(effective, facts, False, False, None)
            return effective
