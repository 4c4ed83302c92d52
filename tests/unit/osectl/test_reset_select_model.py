"""The data of `osectl reset select`: the truth is computed here from the items the test
made up, with the daemon's documented rules (prefix exclusion; a directory is an item
only when everything under it is), never read back from the model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from osectl.reset_select_model import Item, SelectionError, SelectModel, item_from_dbus

ITEMS = [
    Item("var/cache/apt/archives/a.deb", 4096, "cache", "apt-cache"),
    Item("var/cache/apt/archives/b.deb", 8192, "cache", "apt-cache"),
    Item("home/u/.cache/x", 100, "cache", "user-cache"),
    Item("home/u/.cache/pip/y", 200, "cache", "pip-cache"),
    Item("home/u/.cache/pip", 4096, "cache", "pip-cache", kind="dir"),
    Item("var/log/syslog.1", 1000, "log", "old-logs"),
    Item("var/log/apt/history.log.1.gz", 50, "log", "old-logs"),
]


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def find(model: SelectModel, *labels: str):  # type: ignore[no-untyped-def]
    node = model.root
    for label in labels:
        node = node.children[label]
    return node


def test_the_tree_groups_by_class_then_rule_then_directories() -> None:
    m = SelectModel(ITEMS)
    assert [n.label for n in m.root.sorted_children()] == ["cache", "log"]
    assert sorted(find(m, "cache").children) == ["apt-cache", "pip-cache", "user-cache"]
    # a directory chain with one child each shows as one line
    arch = find(m, "cache", "apt-cache", "var/cache/apt/archives")
    assert sorted(arch.children) == ["a.deb", "b.deb"]
    assert arch.path == "var/cache/apt/archives"
    pip = find(m, "cache", "pip-cache", "home/u/.cache/pip")
    assert pip.item == 4 and sorted(pip.children) == ["y"]
    assert m.node_bytes(find(m, "cache")) == 4096 + 8192 + 100 + 200 + 4096
    assert m.node_bytes(find(m, "log")) == 1050


def test_everything_ticked_is_the_whole_plan_and_no_exclusion() -> None:
    m = SelectModel(ITEMS)
    total, by_class = m.totals("after")
    assert (total.count, total.bytes) == (7, sum(i.bytes for i in ITEMS))
    assert (by_class["log"].count, by_class["log"].bytes) == (2, 1050)
    assert m.selection({"profile": "light"}) == {"profile": "light"}


def test_unticking_a_directory_excludes_it_and_updates_the_totals() -> None:
    m = SelectModel(ITEMS)
    m.toggle(find(m, "cache", "apt-cache", "var/cache/apt/archives"))
    assert m.state(find(m, "cache")) == "some"
    assert m.state(find(m, "cache", "apt-cache")) == "none"
    assert m.selection({"profile": "light"}) == {
        "profile": "light", "exclude_paths": ["var/cache"]}
    total, _ = m.totals("after")
    assert (total.count, total.bytes) == (5, 100 + 200 + 4096 + 1050)
    before, _ = m.totals("before")
    assert before.count == 7
    m.toggle(find(m, "cache", "apt-cache"))  # ticks it all again
    assert m.selection({"profile": "light"}) == {"profile": "light"}


def test_a_rule_inside_another_rules_tree_is_not_swept_along() -> None:
    m = SelectModel(ITEMS)
    m.toggle(find(m, "cache", "user-cache"))  # home/u/.cache/x only
    sel = m.selection({"profile": "light"})
    # home/u/.cache would also take pip's items: the exclusion is the file itself
    assert sel["exclude_paths"] == ["home/u/.cache/x"]


def test_an_unticked_child_drops_its_directory_item_from_the_totals() -> None:
    m = SelectModel(ITEMS)
    m.toggle(find(m, "cache", "pip-cache", "home/u/.cache/pip", "y"))
    assert m.selection({})["exclude_paths"] == ["home/u/.cache/pip/y"]
    total, _ = m.totals("after")
    # y and the pip directory (not everything under it goes) stay
    assert (total.count, total.bytes) == (5, 4096 + 8192 + 100 + 1050)
    assert m.state(find(m, "cache", "pip-cache", "home/u/.cache/pip")) == "some"


def test_too_many_separate_exclusions_is_an_error_and_base_excludes_are_kept() -> None:
    items = [Item(f"tmp/d{i}/f", 1, "temp", "tmp") for i in range(300)]
    items += [Item(f"tmp/d{i}/g", 1, "temp", "tmp") for i in range(300)]
    m = SelectModel(items)
    for i in range(300):
        m.toggle(find(m, "temp", "tmp", "tmp", f"d{i}", "f"))
    try:
        m.selection({})
    except SelectionError as e:
        assert "300" in str(e)
    else:
        raise AssertionError("no error")
    m2 = SelectModel(items[:2])
    assert m2.selection({"exclude_paths": ["opt"]})["exclude_paths"] == ["opt"]


def test_item_from_dbus_takes_the_exact_name_bytes() -> None:
    it = item_from_dbus({"path": "a/\\xff", "path_bytes": b"a/\xff", "bytes": 5,
                         "cls": "temp", "rule": "tmp", "kind": "file", "risk": "safe"})
    assert it.path.encode("utf-8", "surrogateescape") == b"a/\xff"
    m = SelectModel([it, Item("a/ok", 1, "temp", "tmp")])
    m.toggle(find(m, "temp", "tmp", "a", "\udcff"))
    try:
        m.selection({})
    except SelectionError:
        pass
    else:
        raise AssertionError("a non-UTF-8 exclusion went through")


names = st.sampled_from(["a", "b", "c"])
paths = st.lists(names, min_size=1, max_size=4).map("/".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(paths, st.integers(0, 10**6), st.sampled_from(["r1", "r2"])),
                min_size=1, max_size=30, unique_by=lambda t: t[0]),
       st.lists(st.integers(0, 200), max_size=8))
def test_the_exclusion_covers_exactly_the_unticked_items(rows, clicks) -> None:  # type: ignore[no-untyped-def]
    items = [Item(p, b, "cache", r) for p, b, r in rows]
    m = SelectModel(items)
    nodes = list(m.walk())
    for c in clicks:  # what a person can do: toggle lines of the tree
        m.toggle(nodes[c % len(nodes)])
    ex = m.selection({}).get("exclude_paths", [])
    for i, (p, _b, _r) in enumerate(rows):
        assert any(under(p, q) for q in ex) == (not m.ticked[i]), (p, ex)
    # the daemon's rule, applied here: excluded, or a directory with something excluded below
    want = [(p, b) for p, b, _r in rows
            if not any(under(p, q) or q.startswith(p + "/") for q in ex)]
    total, _ = m.totals("after")
    assert (total.count, total.bytes) == (len(want), sum(b for _, b in want))


def test_osectl_starts_without_importing_textual() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import sys; import osectl.main, osectl.reset; "
         "print(any(m.split('.')[0] == 'textual' for m in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
