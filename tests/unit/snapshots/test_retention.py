from __future__ import annotations

from datetime import UTC, datetime, timedelta

from oseprovd.snapshots.models import Retention, SnapshotRecord
from oseprovd.snapshots.retention import select_victims

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def rec(n: int, age_h: float, **kw: object) -> SnapshotRecord:
    return SnapshotRecord.model_validate({
        "id": f"root-{n}", "config": "root", "number": n, "backend": "btrfs",
        "created": NOW - timedelta(hours=age_h), **kw})


def test_number_limit_keeps_newest_and_pairs_go_together() -> None:
    records = []
    for i in range(1, 9):
        records.append(rec(2 * i - 1, 100 - i, kind="pre", cleanup="number"))
        records.append(rec(2 * i, 100 - i, kind="post", cleanup="number",
                           pre_id=f"root-{2 * i - 1}"))
    victims = select_victims(records, Retention(number_limit=3), NOW)
    # 8 pairs, keep the 3 newest: pairs 1..5 go, pre and post
    assert victims == [f"root-{n}" for n in range(1, 11)]


def test_important_counted_apart_and_min_age() -> None:
    records = [rec(i, 10 - i, cleanup="number", important=i % 2 == 0) for i in range(1, 9)]
    records.append(rec(9, 0.1, cleanup="number"))  # too young to go
    victims = select_victims(records, Retention(number_limit=1, number_limit_important=2),
                             NOW)
    # unimportant 1,3,5,7,9 -> keep 9 only, but... 9 is newest; 1,3,5,7 go
    # important 2,4,6,8 -> keep 8,6; 2,4 go
    assert victims == ["root-1", "root-2", "root-3", "root-4", "root-5", "root-7"]


def test_other_cleanup_kinds_untouched() -> None:
    records = [rec(i, 100, cleanup="") for i in range(1, 80)]
    assert select_victims(records, Retention(number_limit=0), NOW) == []


def test_timeline_keeps_first_of_each_period() -> None:
    # hourly snapshots for 3 days
    records = [rec(i + 1, 72 - i, cleanup="timeline") for i in range(72)]
    policy = Retention(timeline_limit_hourly=5, timeline_limit_daily=2,
                       timeline_limit_monthly=0, timeline_limit_yearly=0)
    victims = set(select_victims(records, policy, NOW))
    kept = {r.id for r in records} - victims
    newest5 = {r.id for r in records[-5:]}
    assert newest5 <= kept
    # the first snapshot of each of the last 2 days is kept
    by_day: dict[object, str] = {}
    for r in records:
        by_day.setdefault(r.created.date(), r.id)
    assert set(list(by_day.values())[-2:]) <= kept
    assert len(kept) <= 7


def test_free_space_candidates_order() -> None:
    from oseprovd.snapshots.retention import free_space_candidates

    records = [rec(1, 50, cleanup="number", important=True),
               rec(2, 40, cleanup="number", kind="pre"),
               rec(3, 40, cleanup="number", kind="post", pre_id="root-2"),
               rec(4, 30, cleanup="timeline"),
               rec(5, 20, cleanup="timeline"),
               rec(6, 10, cleanup="number"),
               rec(7, 0.1, cleanup="number"),  # newest and too young
               rec(8, 60, cleanup="")]         # not managed by cleanup
    groups = free_space_candidates(records, Retention(), NOW)
    # unimportant oldest first (pair together), newest of each algorithm kept,
    # important last
    assert groups == [["root-2", "root-3"], ["root-4"], ["root-6"], ["root-1"]]
