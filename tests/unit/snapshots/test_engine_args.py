"""Property tests: whatever a caller sends, the engine either refuses it with a domain
error or acts on a normalized, in-tree value."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from oseprovd.errors import OseError
from tests.unit.snapshots.test_engine import make

paths = st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["..", "../x", "a/../../b", "/etc/passwd", ".", "", "a//b/./c", "-rf", "\x00"]),
    max_size=5)


@settings(max_examples=150, deadline=None)
@given(paths)
def test_undo_paths_refused_or_normalized(ps: list[str]) -> None:
    engine, _backend, _ = make()
    snap = engine.create_snapshot("root")
    try:
        result = engine.undo(snap.id, ps)
    except OseError:
        return
    for p in result.paths:
        parts = p.split("/") if p else []
        assert ".." not in parts and "" not in parts and "." not in parts
        assert "\x00" not in p and not p.startswith("/")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40), st.dictionaries(st.text(max_size=10), st.text(max_size=10),
                                             max_size=40))
def test_create_arguments(description: str, userdata: dict[str, str]) -> None:
    engine, backend, _ = make()
    try:
        rec = engine.create_snapshot("root", description, userdata)
    except (OseError, ValidationError):
        assert backend.saved == {}
        return
    assert rec.description == description and rec.userdata == userdata


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_any_id_is_refused_or_found(snap_id: str) -> None:
    engine, _, _ = make()
    engine.create_snapshot("root")
    try:
        rec = engine.get_snapshot(snap_id)
    except OseError:
        return
    assert rec.id == snap_id == "root-1"
