"""Analyze classifies what a rule matched but dpkg lists (issue 5: "system (owned by a
package of high priority), app (owned by another package)"): kept, per package, with
its priority from dpkg's status. Truth: the sandbox's planted dpkg database (apt is
important, hello optional; apt lists var/cache/apt/archives/partial, hello lists
opt/hello and opt/hello/hello.bin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from oseprovd.reset.models import Selection
from tests.unit.reset.livedin import make_rig


@pytest.mark.parametrize("workers", [1, 2])
def test_kept_entries_are_classified_by_their_package(tmp_path: Path, workers: int) -> None:
    rig = make_rig(tmp_path, workers=workers)
    try:
        deep = rig.engine.analyze(Selection(profile="deep"))
        got = {k.package: (k.priority, k.cls, k.count) for k in deep.kept_by_package}
        assert got == {"apt": ("important", "system", 1), "hello": ("optional", "app", 2)}
        assert deep.kept_owned_by_package == 3
        assert all("dpkg lists them for" in k.reason for k in deep.kept_by_package)
        assert any("(apt, hello)" in n for n in deep.notes)
        # and none of them is an item of the plan
        plan = rig.engine.preview(Selection(profile="deep"))
        items = {i.path for i in rig.engine.plan_items(plan.id, 0, 10000)}
        assert not items & {"var/cache/apt/archives/partial", "opt/hello",
                            "opt/hello/hello.bin"}
        assert plan.analysis.kept_by_package == deep.kept_by_package
        light = rig.engine.analyze(Selection(profile="light"))
        assert [(k.package, k.cls) for k in light.kept_by_package] == [("apt", "system")]
    finally:
        rig.engine.close()
