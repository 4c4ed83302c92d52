"""Which snapshots a cleanup deletes: snapper's number and timeline algorithms.

number: among snapshots marked cleanup="number", keep the newest `number_limit`
unimportant and the newest `number_limit_important` important ones; a post snapshot
goes with its pre. timeline: among cleanup="timeline" ones, keep the first snapshot of
each of the last N hours, days, weeks, months and years. Nothing younger than the
min age is ever deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import datetime, timedelta

from oseprovd.snapshots.models import Retention, SnapshotRecord


def _number_victims(records: Sequence[SnapshotRecord], policy: Retention,
                    now: datetime) -> set[str]:
    heads = sorted((r for r in records if r.cleanup == "number" and r.kind != "post"),
                   key=lambda r: r.number, reverse=True)
    kept_plain = kept_important = 0
    victims: set[str] = set()
    for r in heads:
        if r.important:
            kept_important += 1
            over = kept_important > policy.number_limit_important
        else:
            kept_plain += 1
            over = kept_plain > policy.number_limit
        if over and now - r.created >= timedelta(seconds=policy.number_min_age):
            victims.add(r.id)
    for r in records:
        if r.kind == "post" and r.cleanup == "number" and r.pre_id in victims:
            victims.add(r.id)
    return victims


_PERIODS: tuple[tuple[str, Callable[[datetime], Hashable]], ...] = (
    ("timeline_limit_hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("timeline_limit_daily", lambda t: (t.year, t.month, t.day)),
    ("timeline_limit_weekly", lambda t: t.isocalendar()[:2]),
    ("timeline_limit_monthly", lambda t: (t.year, t.month)),
    ("timeline_limit_yearly", lambda t: t.year),
)


def _timeline_victims(records: Sequence[SnapshotRecord], policy: Retention,
                      now: datetime) -> set[str]:
    timeline = sorted((r for r in records if r.cleanup == "timeline"),
                      key=lambda r: (r.created, r.number))
    keep: set[str] = set()
    for field, period in _PERIODS:
        limit = int(getattr(policy, field))
        if limit <= 0:
            continue
        firsts: dict[Hashable, str] = {}
        for r in timeline:  # oldest first: the first snapshot of each period
            firsts.setdefault(period(r.created), r.id)
        keep.update(list(firsts.values())[-limit:])
    min_age = timedelta(seconds=policy.timeline_min_age)
    return {r.id for r in timeline if r.id not in keep and now - r.created >= min_age}


def select_victims(records: Sequence[SnapshotRecord], policy: Retention,
                   now: datetime) -> list[str]:
    """Ids to delete, oldest first."""
    victims = _number_victims(records, policy, now) | _timeline_victims(records, policy, now)
    return [r.id for r in sorted(records, key=lambda r: r.number) if r.id in victims]


def free_space_candidates(records: Sequence[SnapshotRecord], policy: Retention,
                          now: datetime) -> list[list[str]]:
    """What the free-space limit may delete, oldest first, a pre with its post:
    number/timeline snapshots past their min age; important ones only after all
    others, and never the newest of each algorithm."""
    def old_enough(r: SnapshotRecord) -> bool:
        age = policy.number_min_age if r.cleanup == "number" else policy.timeline_min_age
        return now - r.created >= timedelta(seconds=age)

    heads = [r for r in records if r.cleanup in ("number", "timeline") and r.kind != "post"]
    newest = {max((r for r in heads if r.cleanup == c), key=lambda r: r.number).id
              for c in ("number", "timeline") if any(r.cleanup == c for r in heads)}
    posts = {r.pre_id: r.id for r in records if r.kind == "post" and r.pre_id}
    groups = []
    for r in sorted(heads, key=lambda r: (r.important, r.number)):
        if r.id in newest or not old_enough(r):
            continue
        groups.append([r.id] + ([posts[r.id]] if r.id in posts else []))
    return groups
