"""medium's dotfiles and nuclear's homes: removed, /etc/skel copied in as the user,
and a rollback that takes skel's files away again and puts the old ones back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oseprovd.errors import NotApplicable
from oseprovd.reset.models import ExecuteOptions, Selection
from tests.harness import treemanifest
from tests.unit.reset.livedin import all_paths, make_rig, warm_atimes


def _m(root: Path) -> dict[str, object]:
    warm_atimes(root)
    return treemanifest.manifest(root, exclude=(b"var/lib/ose",))


def test_medium_resets_dotfiles_to_skel_and_rolls_back(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    root = rig.root
    (root / "home/alice/.vimrc").write_text("set nu\n")
    os.chown(root / "home/alice/.vimrc", 1000, 1000)
    before = _m(root)
    plan = rig.engine.preview(Selection(profile="medium", exclude_packages=("*",)))
    assert plan.analysis.skel_trees == ("home/alice", "home/bob")
    items = {i.path: i for i in rig.engine.plan_items(plan.id, 0, 10000)}
    for p in ("home/alice/.bashrc", "home/alice/.profile", "home/alice/.vimrc",
              "home/bob/.bashrc"):
        assert items[p].cls == "user" and items[p].risk == "caution"
    assert not any(p.startswith("home/alice/Documents") for p in items)
    assert "home/alice/.cache" not in items  # the cache rule's tree: its contents only
    assert "root/.bashrc" not in items and plan.highest_risk == "caution"
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert r.skipped_count == 0, r.skipped
    home = root / "home/alice"
    assert (home / ".bashrc").read_text() == "# skel bashrc\n"
    assert not (home / ".vimrc").exists()
    conf = home / ".config/app.conf"
    st = os.lstat(conf)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o600)
    assert os.lstat(home / ".config").st_uid == 1000
    assert (home / "Documents/notes.txt").exists()
    rig.engine.rollback(r.execution, rig.journal)
    diff = treemanifest.differences(before, _m(root))
    assert diff == [], "\n".join(diff)


def test_nuclear_without_baseline_removes_every_person(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    plan = rig.engine.preview(Selection(profile="nuclear", exclude_packages=("*",)))
    assert plan.analysis.users_removed == ("alice", "bob")
    assert plan.analysis.skel_trees == ()
    assert any("no baseline" in n for n in plan.analysis.notes)
    with pytest.raises(NotApplicable):  # no account tool in this engine
        rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)


def test_nuclear_empties_homes_to_skel(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    root = rig.root
    rig.engine.capture_baseline()  # alice and bob are "factory": homes emptied, kept
    before = _m(root)
    before_paths = all_paths(root)
    plan = rig.engine.preview(Selection(profile="nuclear", exclude_packages=("*",)))
    assert plan.analysis.users_removed == ()
    items = {i.path for i in rig.engine.plan_items(plan.id, 0, 10000)}
    assert "home/alice/Documents/notes.txt" in items and plan.highest_risk == "destructive"
    # the sandbox's dpkg md5sums are made up: its conffiles count as modified, and
    # there is no .deb to restore them from
    assert {c[0] for c in plan.analysis.conffiles_restored} >= {"etc/debian_version"}
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert {s.path for s in r.skipped} == {c[0] for c in plan.analysis.conffiles_restored}
    assert all("no .deb" in s.reason for s in r.skipped)
    left = {p for p in all_paths(root) if p.startswith("home/alice/")}
    assert left == {"home/alice/.cache", "home/alice/.cache/pip", "home/alice/.bashrc",
                    "home/alice/.profile", "home/alice/.config",
                    "home/alice/.config/app.conf"}
    assert all_paths(root) - before_paths <= {"home/alice/.config",
                                              "home/alice/.config/app.conf",
                                              "home/bob/.config", "home/bob/.config/app.conf"}
    rig.engine.rollback(r.execution, rig.journal)
    diff = treemanifest.differences(before, _m(root))
    assert diff == [], "\n".join(diff)
