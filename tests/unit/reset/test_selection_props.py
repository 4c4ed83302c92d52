"""Property: whatever paths a selection names, Preview either refuses them
(InvalidArguments) or plans only entries inside the root that exist there, and
changes nothing on disk."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oseprovd.errors import InvalidArguments
from oseprovd.reset.models import Selection
from tests.unit.reset.livedin import Rig, all_paths, make_rig

SEGMENTS = st.sampled_from(["home", "alice", "..", ".", "", ".cache", "var", "tmp", "etc",
                            "/", "mozilla", "*", "a\0b", "x" * 300, "é", "proc"])
PATHS = st.lists(SEGMENTS, max_size=6).map("/".join)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Rig:
    return make_rig(tmp_path_factory.mktemp("props"))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inc=st.lists(PATHS, max_size=2), exc=st.lists(PATHS, max_size=2),
       add=st.lists(PATHS, max_size=1), globs=st.lists(PATHS, max_size=2))
def test_selection_paths(rig: Rig, inc: list[str], exc: list[str], add: list[str],
                         globs: list[str]) -> None:
    before = all_paths(rig.root)
    sel = Selection(profile="light", include_paths=tuple(inc), exclude_paths=tuple(exc),
                    add_paths=tuple(add), exclude_globs=tuple(globs))
    try:
        plan = rig.engine.preview(sel)
    except InvalidArguments:
        assert any(".." in p.split("/") or "\0" in p or len(p.encode()) > 4096
                   or not p.strip("/.") for p in (*inc, *exc, *add))
        return
    for item in rig.engine.plan_items(plan.id, 0, 10000) if plan.item_count else []:
        assert ".." not in item.path.split("/")
        assert item.path in before
        assert not item.path.startswith(("proc/", "boot/", "var/lib/ose"))
        assert item.path != "etc/fstab"
        if item.rule.startswith("added."):
            assert item.risk == "destructive"
    assert all_paths(rig.root) == before
