"""Reset1's request models and the polkit action a plan needs (pure: no bus)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dbus_fast import Variant

from oseprovd.bus.reset import SelectionRequest, execute_action
from oseprovd.errors import InvalidArguments
from oseprovd.reset.models import AnalyzeResult, PackageChange, Plan, Selection, Totals


def plan(by_class: dict[str, int], risk: str = "safe", **analysis: object) -> Plan:
    a = AnalyzeResult(profile="x", baseline_source="captured", totals=Totals(),
                      by_class={k: Totals(count=v, bytes=v) for k, v in by_class.items()},
                      by_risk={}, by_rule={}, **analysis)  # type: ignore[arg-type]
    return Plan(id="0" * 16, digest="0" * 64, created=datetime.now(UTC),
                selection=Selection(), analysis=a, highest_risk=risk)  # type: ignore[arg-type]


def test_the_action_follows_what_the_plan_touches() -> None:
    assert execute_action(plan({"cache": 3, "log": 1, "temp": 2, "user": 0})) == \
        "org.ose.reset.clean"
    assert execute_action(plan({"cache": 3}, risk="caution")) == "org.ose.reset.system"
    assert execute_action(plan({"app": 1})) == "org.ose.reset.system"
    assert execute_action(plan({"cache": 1}, package_changes=(PackageChange(
        action="remove", name="hello", architecture="amd64", version="1",
        reason="after baseline"),))) == "org.ose.reset.system"
    assert execute_action(plan({"cache": 1}, conffiles_restored=(
        ("/etc/x.conf", "x", "0" * 32, "x.deb"),))) == "org.ose.reset.system"
    assert execute_action(plan({"user": 1}, risk="destructive")) == "org.ose.reset.userdata"
    assert execute_action(plan({"cache": 1}, skel_trees=("home/a",))) == \
        "org.ose.reset.userdata"
    assert execute_action(plan({}, users_removed=("bob",))) == "org.ose.reset.userdata"
    # user data wins over package changes: both auth_admin, the data is not reinstallable
    assert execute_action(plan({"user": 1, "app": 1}, risk="destructive", package_changes=(
        PackageChange(action="purge", name="x", architecture="all", version="1",
                      reason="r"),))) == "org.ose.reset.userdata"


def test_selection_keys_are_the_engines_and_nothing_else() -> None:
    sel = SelectionRequest.from_dbus({
        "profile": Variant("s", "medium"), "exclude_paths": Variant("as", ["/home/a"]),
        "classes": Variant("as", ["cache", "log"]), "max_risk": Variant("s", "caution"),
    }).selection()
    assert sel == Selection(profile="medium", exclude_paths=("/home/a",),
                            classes=("cache", "log"), max_risk="caution")
    for bad in ({"profil": Variant("s", "light")},           # unknown key
                {"classes": Variant("s", "cache")},           # a string, not a list
                {"include_paths": Variant("ai", [1])}):       # wrong element type
        with pytest.raises((InvalidArguments, ValueError)):
            SelectionRequest.from_dbus(bad)
    for bad_value in ({"classes": Variant("as", ["secrets"])},
                      {"max_risk": Variant("s", "yolo")}):
        with pytest.raises(InvalidArguments):
            SelectionRequest.from_dbus(bad_value).selection()
