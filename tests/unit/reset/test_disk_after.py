"""Preview's disk use after counts the packages the plan removes (issue 5: "disk usage
before and after"). Truth: the Installed-Size the test writes into the sandbox's dpkg
status and the allocated bytes of the plan's items by lstat."""

from __future__ import annotations

import os
from pathlib import Path

from oseprovd.reset.models import Selection
from tests.unit.reset.livedin import make_rig

HELLO_KIB = 123456


def _freed(plan) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {d.filesystem: d.used_before - d.used_after for d in plan.disk}


def test_removed_packages_count_in_the_disk_after(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    status = rig.root / "var/lib/dpkg/status"
    status.write_text(status.read_text().replace(
        "Package: hello\n", f"Package: hello\nInstalled-Size: {HELLO_KIB}\n"))
    # medium removes hello (manual, not in the distribution's base)
    plan = rig.engine.preview(Selection(profile="medium"))
    assert [c.name for c in plan.analysis.package_changes] == ["hello"]
    items = rig.engine.plan_items(plan.id, 0, 10000)
    on_disk = sum(os.lstat(rig.root / i.path).st_blocks * 512 for i in items)
    (freed,) = _freed(plan).values()  # the sandbox is one filesystem
    assert freed == on_disk + HELLO_KIB * 1024
    # no package changes: only the items
    kept = rig.engine.preview(Selection(profile="medium", exclude_packages=("*",)))
    items = rig.engine.plan_items(kept.id, 0, 10000)
    assert list(_freed(kept).values()) == [
        sum(os.lstat(rig.root / i.path).st_blocks * 512 for i in items)]
