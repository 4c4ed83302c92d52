"""light vacuums the journal to a size (issue 5): the newest archived journal files
up to the rule's byte budget stay, older ones go, the active files always stay.
Ground truth: the files the test planted, their mtimes and `st_blocks` from lstat."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from oseprovd.errors import InvalidArguments
from oseprovd.reset.models import ExecuteOptions, Selection
from tests.unit.reset.livedin import all_paths, make_rig

JOURNAL = "var/log/journal/0123456789abcdef"
PROFILE = """description = "journal to 3 archives"
[[rule]]
id = "journal-archives"
class = "log"
risk = "safe"
paths = ["var/log/journal"]
names = ["*@*.journal", "*@*.journal~"]
keep_newest_bytes = {budget}
"""


def _plant(root: Path) -> list[str]:
    """Six archives of 16 KiB, a day apart (newest last), and the active file."""
    d = root / JOURNAL
    d.mkdir(parents=True)
    out = []
    now = time.time()
    for i in range(6):
        rel = f"{JOURNAL}/system@0005f{i:04d}-{i:016x}.journal"
        (root / rel).write_bytes(os.urandom(16384))
        t = now - (10 - i) * 86400
        os.utime(root / rel, (t, t))
        out.append(rel)
    (d / "system.journal").write_bytes(os.urandom(16384))
    return out


def _profile(root: Path, budget: int) -> None:
    extra = root / "etc/ose/reset-profiles.d"
    extra.mkdir(parents=True, exist_ok=True)
    (extra / "vacuum.toml").write_text(PROFILE.format(budget=budget))


@pytest.mark.parametrize("workers", [1, 2])  # 2: the walk spread over processes
def test_the_newest_archives_within_the_budget_stay(tmp_path: Path, workers: int) -> None:
    rig = make_rig(tmp_path, workers=workers)
    archives = _plant(rig.root)
    used = [os.lstat(rig.root / a).st_blocks * 512 for a in archives]
    # room for the three newest (by lstat's allocated bytes), not for a fourth
    _profile(rig.root, sum(used[3:]) + used[2] // 2)
    sel = Selection(profile="vacuum")
    plan = rig.engine.preview(sel)
    items = {i.path for i in rig.engine.plan_items(plan.id, 0, 10000)}
    assert items == set(archives[:3])  # the three oldest
    assert plan.analysis.by_rule["journal-archives"].count == 3
    assert plan.analysis.by_rule["journal-archives"].bytes == sum(used[:3])
    a = rig.engine.analyze(sel)
    assert a.by_rule["journal-archives"] == plan.analysis.by_rule["journal-archives"]
    before = all_paths(rig.root)
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert r.skipped_count == 0, r.skipped
    assert all_paths(rig.root) == before - set(archives[:3])
    assert (rig.root / JOURNAL / "system.journal").exists()
    rig.engine.close()


def test_a_zero_budget_takes_every_archive_and_light_keeps_small_journals(
        tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    archives = _plant(rig.root)
    _profile(rig.root, 0)  # 0: no budget, every archive goes
    plan = rig.engine.preview(Selection(profile="vacuum"))
    items = {i.path for i in rig.engine.plan_items(plan.id, 0, 10000)}
    assert {p for p in items if p.startswith(JOURNAL + "/")} == set(archives)
    # light's 64 MiB holds these 96 KiB: none of them is an item
    light = rig.engine.preview(Selection(profile="light"))
    items = {i.path for i in rig.engine.plan_items(light.id, 0, 10000)}
    assert not items & set(archives)


def test_a_budget_without_names_is_refused(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    extra = rig.root / "etc/ose/reset-profiles.d"
    extra.mkdir(parents=True)
    (extra / "bad.toml").write_text('[[rule]]\nid = "x"\nclass = "log"\nrisk = "safe"\n'
                                    'paths = ["var/log"]\nkeep_newest_bytes = 10\n')
    with pytest.raises(InvalidArguments, match="keep_newest_bytes"):
        rig.engine.preview(Selection(profile="bad"))
