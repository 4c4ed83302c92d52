"""Profiles (TOML, include inheritance, extension dir) and the baseline (pure parts)."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oseprovd.errors import InvalidArguments, NotFound, OseError
from oseprovd.reset import baseline, dpkgdb
from oseprovd.reset.engine import JobJournal, check_execution_id, check_plan_id
from oseprovd.reset.profiles import ProfileCatalog
from oseprovd.system.rootfs import TargetRoot
from tests.harness.components import require
from tests.unit.reset.livedin import STATUS


def test_shipped_profiles_and_inheritance() -> None:
    cat = ProfileCatalog()
    assert cat.names() == ["deep", "light", "medium", "nuclear"]
    light, medium, deep, nuclear = (cat.get(n) for n in ("light", "medium", "deep",
                                                         "nuclear"))
    ids = [r.id for r in light.rules]
    assert "user-cache" in ids and "apt-archives" in ids and "rotated-logs" in ids
    assert [r.id for r in medium.rules] == [*ids, "dotfiles"]
    dot = medium.rules[-1]
    assert dot.top_level and dot.skel and dot.paths == ("{user_home}",)
    assert medium.packages.remove_after_baseline and not light.packages.remove_after_baseline
    assert {"opt", "usr-local"} <= {r.id for r in deep.rules}
    assert deep.packages.purge_data and deep.packages.remove_after_baseline
    assert nuclear.packages.restore_baseline and "home-data" in {r.id for r in nuclear.rules}
    assert all(r.risk == "safe" for r in light.rules)


def _extra(tmp_path: Path, files: dict[str, str]) -> ProfileCatalog:
    d = tmp_path / "etc/ose/reset-profiles.d"
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return ProfileCatalog(TargetRoot(tmp_path))


def test_extension_dir_adds_and_replaces(tmp_path: Path) -> None:
    cat = _extra(tmp_path, {
        "builds.toml": 'include = ["light"]\n[[rule]]\nid = "ccache"\nclass = "cache"\n'
                       'risk = "safe"\npaths = ["{home}/.ccache"]\n',
        "light.toml": '[[rule]]\nid = "only"\nclass = "temp"\nrisk = "safe"\n'
                      'paths = ["var/tmp"]\n'})
    assert [r.id for r in cat.get("light").rules] == ["only"]  # replaced by name
    assert [r.id for r in cat.get("builds").rules] == ["only", "ccache"]
    assert "/etc/ose/reset-profiles.d/builds.toml" in cat.get("builds").sources


@pytest.mark.parametrize("text, why", [
    ('include = ["bad"]\n', "includes itself"),
    ('include = ["nope"]\n', "unknown"),
    ('[[rule]]\nid = "x"\nclass = "system"\nrisk = "safe"\npaths = ["etc"]\n', "system"),
    ('[[rule]]\nid = "x"\nclass = "cache"\nrisk = "safe"\npaths = ["var/../etc"]\n', ".."),
    ('[[rule]]\nid = "x"\nclass = "cache"\nrisk = "safe"\npaths = ["/"]\n', "root"),
    ('surprise = 1\n', "surprise"),
    ('[[rule\n', "bad.toml"),
])
def test_bad_profiles_are_refused_with_the_file_named(tmp_path: Path, text: str,
                                                      why: str) -> None:
    cat = _extra(tmp_path, {"bad.toml": text})
    with pytest.raises(InvalidArguments, match=why):
        cat.get("bad")


def test_profile_names_and_symlinked_extension_dir(tmp_path: Path) -> None:
    with pytest.raises(InvalidArguments):
        ProfileCatalog().get("../light")
    with pytest.raises(NotFound):
        ProfileCatalog().get("missing")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "evil.toml").write_text('description = "x"\n')
    (tmp_path / "etc/ose").mkdir(parents=True)
    os.symlink(elsewhere, tmp_path / "etc/ose/reset-profiles.d")
    assert "evil" not in ProfileCatalog(TargetRoot(tmp_path)).names()


def test_conffiles_parsed_as_dpkg_query_prints_them(tmp_path: Path) -> None:
    got = {(c.package, c.path, c.md5, c.obsolete) for c in dpkgdb.parse_conffiles(
        STATUS.encode())}
    assert ("apt", "/etc/cron.daily/apt-compat", "1d1f1e5a0b7e1e0cbd95b2b1f6d3a111",
            True) in got
    assert ("removed-pkg", "/etc/removed.conf", "0" * 32, False) in got
    # ground truth: dpkg-query reading the same status file
    admin = tmp_path / "dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "status").write_text(STATUS)
    (admin / "available").write_text("")
    out = subprocess.run([require("dpkg-query", "ground truth"), f"--admindir={admin}",
                          "-W", "-f",
                          "${Package}\\n${Conffiles}\\n"], check=True, capture_output=True,
                         text=True).stdout
    truth = set()
    pkg = ""
    for line in out.splitlines():
        if line and not line.startswith(" "):
            pkg = line
        elif line.strip():
            f = line.split()
            truth.add((pkg, f[0], f[1], "obsolete" in f[2:]))
    assert got == truth


def test_distribution_fallback_and_repository(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                     "al:x:1000:1000::/home/al:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    fixed = datetime(2026, 1, 1, tzinfo=UTC)
    dist = baseline.distribution(TargetRoot(root), lambda: fixed)
    assert dist.source == "distribution" and "no baseline" in dist.note
    assert {p.name for p in dist.packages} == {"base-files", "apt"}
    assert [u.name for u in dist.users] == ["root"]
    cap = baseline.capture(TargetRoot(root), lambda: fixed)
    assert {p.name for p in cap.packages} == {"base-files", "apt", "hello", "libfoo1"}
    repo = baseline.FileBaselineRepository(tmp_path / "state")
    (tmp_path / "state").mkdir()
    assert repo.load() is None
    repo.save(cap)
    assert repo.load() == cap
    assert (os.stat(tmp_path / "state/baseline.json").st_mode & 0o777) == 0o600
    (tmp_path / "state/baseline.json").write_text("{}")
    with pytest.raises(OseError, match="capture"):
        repo.load()


def test_job_journal_adapter_passes_steps() -> None:
    seen: list[tuple[str, dict[str, object]]] = []
    JobJournal(lambda kind, **data: seen.append((kind, data))).record("reset.begin",
                                                                      {"op": "x1"})
    assert seen == [("reset.begin", {"op": "x1"})]


@given(st.text(max_size=40))
def test_ids_are_checked_before_any_lookup(s: str) -> None:
    ok = len(s) == 16 and set(s) <= set("0123456789abcdef")
    if ok:
        assert check_plan_id(s) == s
    else:
        with pytest.raises(InvalidArguments):
            check_plan_id(s)
    ok_x = len(s) == 17 and s[:1] == "x" and set(s[1:]) <= set("0123456789abcdef")
    if ok_x:
        assert check_execution_id(s) == s
    else:
        with pytest.raises(InvalidArguments):
            check_execution_id(s)


def test_ownership_index_matches_dpkg_query_on_this_machine() -> None:
    """The filtered index (what a scan loads) against `dpkg-query -S` (ground truth)
    on the host's own dpkg database (read only)."""
    prefixes = ["var/cache/apt", "var/log", "usr/local", "tmp", "opt"]
    own = dpkgdb.Ownership.load(TargetRoot("/"), prefixes)
    assert own.owners, "this machine's dpkg lists nothing under the prefixes?"
    sample = sorted(own.owners)[:25]
    out = subprocess.run([require("dpkg-query", "ground truth"), "-S", "--",
                          *[f"/{p}" for p in sample]],
                         capture_output=True, text=True, check=False).stdout
    truth: dict[str, set[str]] = {}
    for line in out.splitlines():
        pkgs, _, path = line.partition(": ")
        truth.setdefault(path.strip("/"), set()).update(
            p.strip().split(":")[0] for p in pkgs.split(","))
    for p in sample:
        assert set(own.owner(p)) == truth.get(p, set()), p
    everything = dpkgdb.Ownership.load(TargetRoot("/"))
    assert {k for k in everything.owners if any(
        k == w or k.startswith(w + "/") or w.startswith(k + "/") for w in prefixes)} == \
        set(own.owners)
