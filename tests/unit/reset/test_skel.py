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


def test_skel_is_written_as_the_user_not_as_root(tmp_path: Path) -> None:
    """Places root may write but the home's owner may not: the old code (root + fchown)
    wrote skel's files there; as the user they fail, are reported and stay absent."""
    rig = make_rig(tmp_path)
    root = rig.root
    plan = rig.engine.preview(Selection(profile="medium", exclude_packages=("*",)))
    # after the preview, so the plan does not remove them
    locked = root / "home/alice/.config"
    locked.mkdir(mode=0o555)
    os.chown(locked, 0, 0)
    locked.chmod(0o555)
    (root / "home/bob").chmod(0o555)  # bob's own home, without his write bit
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    skipped = {s.path: s.reason for s in r.skipped}
    assert set(skipped) == {"home/alice/.config/app.conf", "home/bob/.bashrc",
                            "home/bob/.config", "home/bob/.profile"}, skipped
    assert all("Permission denied" in why for why in skipped.values()), skipped
    assert os.listdir(locked) == []
    assert not set(os.listdir(root / "home/bob")) & {".bashrc", ".profile", ".config"}
    # what alice may write was written, by her: owner and group from the process
    for name in (".bashrc", ".profile"):
        st = os.lstat(root / "home/alice" / name)
        assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert (root / "home/alice/.bashrc").read_text() == "# skel bashrc\n"


def test_skel_runs_with_the_users_supplementary_groups(tmp_path: Path) -> None:
    """alice is in adm (gid 4) in the target's /etc/group: a root:adm 0770 directory in
    her home takes skel's file, created by her."""
    rig = make_rig(tmp_path)
    root = rig.root
    plan = rig.engine.preview(Selection(profile="medium", exclude_packages=("*",)))
    shared = root / "home/alice/.config"
    shared.mkdir()
    os.chown(shared, 0, 4)
    shared.chmod(0o770)
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert r.skipped_count == 0, r.skipped
    st = os.lstat(shared / "app.conf")
    assert (st.st_uid, st.st_mode & 0o777) == (1000, 0o600)
    # bob is in no such group: same directory in his home is refused
    assert os.lstat(root / "home/bob/.config/app.conf").st_uid == 1001  # made by skel


def test_skel_never_follows_symlinks_in_or_as_the_home(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    root = rig.root
    etc = root / "etc"
    before = sorted(os.listdir(etc))
    plan = rig.engine.preview(Selection(profile="medium", exclude_packages=("*",)))
    (root / "home/alice/.config").symlink_to(etc)  # absolute, into the target's /etc
    os.rename(root / "home/bob", root / "bob-moved")
    (root / "home/bob").symlink_to(etc)  # the home itself swapped for a symlink
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert sorted(os.listdir(etc)) == before
    assert not (etc / "app.conf").exists() and not (etc / ".bashrc").exists()
    assert os.path.islink(root / "home/alice/.config")
    assert any(s.path == "home/bob" and "/etc/skel not copied" in s.reason
               for s in r.skipped), r.skipped
    assert os.lstat(root / "home/alice/.bashrc").st_uid == 1000
