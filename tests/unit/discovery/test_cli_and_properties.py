"""The JSON entry point, and properties of the subset resolver and the parsers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oseprovd import errors
from oseprovd.discovery.collectors.osinfo import parse_os_release
from oseprovd.discovery.collectors.packages import parse_control
from oseprovd.discovery.collectors.unitfiles import parse_unit
from oseprovd.discovery.fsread import parse_mountinfo
from oseprovd.discovery.subset import resolve

WORKTREE = Path(__file__).resolve().parents[3]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oseprovd.discovery", *args], cwd=WORKTREE,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_redacts_macs_unless_asked() -> None:
    macs = set()
    for iface in Path("/sys/class/net").iterdir():
        mac = (iface / "address").read_text().strip()
        if mac and mac != "00:00:00:00:00:00":
            macs.add(mac)
    if not macs:
        pytest.skip("no interface with a MAC address here")
    plain = _cli("nics", "network")
    assert plain.returncode == 0, plain.stderr
    report = json.loads(plain.stdout)
    assert report["nics"]["interfaces"]
    assert not any(m in plain.stdout for m in macs)
    full = _cli("--sensitive", "nics")
    assert all(m in full.stdout for m in macs)


def test_cli_unknown_subset_exits_2() -> None:
    done = _cli("nonsense")
    assert done.returncode == 2 and "choose from" in done.stderr and done.stdout == ""


NAMES = ["a", "b", "c", "d", "e"]
GROUPS = {"g1": ["a", "b"], "g2": ["c", "d", "e"]}
MINIMAL = ["a"]
ITEMS = st.sampled_from([*NAMES, *GROUPS, "all", "min"])
SUBSET = st.lists(st.tuples(st.booleans(), ITEMS).map(lambda t: ("!" if t[0] else "") + t[1]),
                  max_size=6)


@given(SUBSET)
def test_subset_properties(subset: list[str]) -> None:
    result = resolve(subset, NAMES, GROUPS, MINIMAL)
    assert result == [n for n in NAMES if n in result]  # ordered, no duplicates
    expand = {**{n: {n} for n in NAMES}, **{g: set(m) for g, m in GROUPS.items()},
              "all": set(NAMES), "min": set(MINIMAL)}
    for item in subset:
        if item.startswith("!") and item != "!all":
            assert not expand[item[1:]] & set(result)  # an exclusion always wins
    if "!min" not in subset and not any(i.startswith("!") and "a" in expand[i[1:]]
                                        for i in subset if i != "!all"):
        assert "a" in result  # min is always there unless excluded


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_subset_rejects_unknown_names(name: str) -> None:
    if name.strip().lstrip("!") in {*NAMES, *GROUPS, "all", "min"}:
        return
    with pytest.raises(errors.InvalidArguments):
        resolve([name], NAMES, GROUPS, MINIMAL)


@given(st.text(max_size=2000))
def test_parsers_never_raise_on_garbage(text: str) -> None:
    parse_os_release(text)
    parse_unit(text)
    parse_control(text.encode("utf-8", "surrogateescape"))


@given(st.text(alphabet="0123456789:/ -abcrw,\\\n", max_size=400))
def test_mountinfo_parser_never_raises(text: str) -> None:
    try:
        parse_mountinfo(text)
    except ValueError:
        pytest.fail("parse_mountinfo raised on malformed input")
