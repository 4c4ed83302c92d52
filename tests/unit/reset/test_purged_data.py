"""deep purges the data of the packages it removes: /var/lib/<package> (issue 5,
"data of removed packages purged"). Ground truth: what the test planted and what the
sandbox's dpkg database lists, never the engine's report."""

from __future__ import annotations

from pathlib import Path

from oseprovd.reset.models import Selection
from tests.unit.reset.livedin import make_rig


def _plant(root: Path) -> None:
    for rel in ("var/lib/hello/state/db", "var/lib/hello/notes", "var/lib/hello/owned",
                "var/lib/hellox/keep", "var/lib/libfoo1/keep"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("data\n")
    # dpkg lists one file there: it is the purge's to remove, never an item
    with open(root / "var/lib/dpkg/info/hello.list", "a") as f:
        f.write("/var/lib\n/var/lib/hello\n/var/lib/hello/owned\n")


def _items(rig, sel: Selection) -> dict[str, str]:  # type: ignore[no-untyped-def]
    plan = rig.engine.preview(sel)
    return {i.path: i.rule for i in rig.engine.plan_items(plan.id, 0, 10000)}


def test_deep_takes_the_data_of_purged_packages_only(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    _plant(rig.root)
    plan = rig.engine.preview(Selection(profile="deep"))
    # hello is manual and not in the (distribution) baseline: deep purges it
    assert [(c.name, c.action) for c in plan.analysis.package_changes] == [("hello", "purge")]
    items = {i.path: i for i in rig.engine.plan_items(plan.id, 0, 10000)}
    purged = {p for p, i in items.items() if i.rule == "purged-data"}
    assert purged == {"var/lib/hello/state", "var/lib/hello/state/db", "var/lib/hello/notes"}
    assert all(items[p].cls == "app" and items[p].risk == "destructive" for p in purged)
    # dpkg's own file and the directory holding it stay; other packages' data and
    # look-alike names stay; so does data of no package (var/lib/mysql)
    assert not {"var/lib/hello", "var/lib/hello/owned", "var/lib/hellox/keep",
                "var/lib/libfoo1/keep", "var/lib/mysql/ibdata1"} & set(items)
    assert plan.analysis.by_rule["purged-data"].count == 3


def test_no_purge_no_data_taken(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    _plant(rig.root)
    # medium removes (doesn't purge): the data stays, as apt's remove leaves it
    assert not any(r == "purged-data" for r in _items(rig, Selection(profile="medium")).values())
    # the package kept by the selection: its data too
    kept = _items(rig, Selection(profile="deep", exclude_packages=("hello",)))
    assert not any(r == "purged-data" for r in kept.values())
    # and Analyze counts what Preview lists
    a = rig.engine.analyze(Selection(profile="deep"))
    assert a.by_rule["purged-data"].count == 3
