"""Attack cases: nothing outside the plan is touched, whatever the tree does.

`outside` is a directory next to the root holding files the attacks aim at; its
manifest (sha256 + lstat + xattrs) must be identical after every run.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from oseprovd.reset.errors import DigestMismatch
from oseprovd.reset.models import ExecuteOptions, Selection
from oseprovd.reset.remover import Planned, Remover
from tests.harness import treemanifest
from tests.harness.components import require, require_root
from tests.unit.reset.livedin import all_paths, make_rig, warm_atimes

LIGHT = Selection(profile="light")


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    (out / "sub").mkdir(parents=True)
    for name in ("passwd", "c.db", "sub/keep"):
        (out / name).write_text(f"precious {name}\n")
    return out


def _m(p: Path) -> dict[str, object]:
    warm_atimes(p)
    return treemanifest.manifest(p)


def test_symlinks_planted_in_caches_are_never_followed(tmp_path: Path) -> None:
    out = _outside(tmp_path)
    rig = make_rig(tmp_path)
    os.symlink(out, rig.root / "home/alice/.cache/evil")  # a link to a directory
    os.symlink(out / "passwd", rig.root / "var/tmp/passwd-link")
    # bob's whole ~/.cache is a symlink: the rule's tree itself is not walked
    shutil.rmtree(rig.root / "home/bob/.cache")
    os.symlink(out, rig.root / "home/bob/.cache")
    before = _m(out)
    plan = rig.engine.preview(LIGHT)
    items = {i.path: i for i in rig.engine.plan_items(plan.id, 0, 10000)}
    assert items["home/alice/.cache/evil"].kind == "symlink"
    assert not any(p.startswith("home/bob/.cache/") for p in items)
    assert any("home/bob/.cache is a symlink" in n for n in plan.analysis.notes)
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert r.skipped_count == 0
    assert not os.path.lexists(rig.root / "home/alice/.cache/evil")  # the link went
    assert os.path.islink(rig.root / "home/bob/.cache")
    assert treemanifest.differences(before, _m(out)) == []


def test_directory_swapped_for_symlink_between_check_and_remove(tmp_path: Path) -> None:
    out = _outside(tmp_path)
    swapped: list[str] = []

    def hook(rel: str) -> None:
        # the attacker wins the race: the parent directory of the file being removed
        # becomes a symlink to `outside`, which holds a file of the same name
        if rel == "home/alice/.cache/mozilla/a/b/c.db" and not swapped:
            b = rig.root / "home/alice/.cache/mozilla/a/b"
            os.rename(b, b.with_name("b.moved"))
            os.symlink(out, b)
            swapped.append(rel)

    rig = make_rig(tmp_path, before_remove=hook)
    before = _m(out)
    plan = rig.engine.preview(LIGHT)
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert swapped
    assert treemanifest.differences(before, _m(out)) == []
    # the planned file went from the directory that was checked (now b.moved)
    assert not (rig.root / "home/alice/.cache/mozilla/a/b.moved/c.db").exists()
    reasons = {s.path: s.reason for s in r.skipped}
    assert "symlink" in reasons["home/alice/.cache/mozilla/a/b"] or \
        "no longer" in reasons["home/alice/.cache/mozilla/a/b"]
    assert os.path.islink(rig.root / "home/alice/.cache/mozilla/a/b")


@contextmanager
def bind_mount(src: Path, dst: Path) -> Iterator[None]:
    require_root("mount --bind")
    mount = require("mount", "bind mounts")
    subprocess.run([mount, "--bind", "--", str(src), str(dst)], check=True)
    try:
        yield
    finally:
        subprocess.run([require("umount", "bind mounts"), "--", str(dst)], check=True)


def test_bind_mount_inside_a_cache_is_never_entered(tmp_path: Path) -> None:
    out = _outside(tmp_path)
    rig = make_rig(tmp_path)
    mnt = rig.root / "home/alice/.cache/mnt"
    mnt.mkdir()
    later = rig.root / "home/bob/.cache/mozilla/a"
    before = _m(out)
    with bind_mount(out, mnt):
        plan = rig.engine.preview(LIGHT)
        paths = {i.path for i in rig.engine.plan_items(plan.id, 0, 10000)}
        assert not any(p.startswith("home/alice/.cache/mnt") for p in paths)
        assert "home/alice/.cache/mnt" in plan.analysis.skipped_mounts
        # and one mounted after the preview, over a planned directory
        with bind_mount(out, later):
            r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
            assert treemanifest.differences(before, _m(out)) == []
        reasons = {s.path: s.reason for s in r.skipped}
        assert "mount point" in reasons["home/bob/.cache/mozilla/a/b/c.db"]
    assert treemanifest.differences(before, _m(out)) == []
    assert (rig.root / "home/bob/.cache/mozilla/a/b/c.db").exists()


def test_items_changed_since_the_preview_are_skipped(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    plan = rig.engine.preview(LIGHT)
    root = rig.root
    with open(root / "var/tmp/build.o", "ab") as f:  # modified
        f.write(b"more")
    os.rename(root / "var/log/syslog.1", root / "var/log/x")  # replaced: new inode
    (root / "var/log/syslog.1").write_text("new content\n")
    os.chown(root / "home/bob/.cache/top-level-file", 1000, 1000)  # owner changed
    (root / "var/tmp/alice-stuff/sub/new.txt").write_text("new")  # new entry in a dir item
    os.unlink(root / "var/crash/app.crash")  # already gone
    before = all_paths(root)
    r = rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    reasons = {s.path: s.reason for s in r.skipped}
    assert "modified" in reasons["var/tmp/build.o"]
    assert "replaced" in reasons["var/log/syslog.1"]
    assert "owner" in reasons["home/bob/.cache/top-level-file"]
    assert "new entries" in reasons["var/tmp/alice-stuff/sub"]
    assert "new entries" in reasons["var/tmp/alice-stuff"]
    assert r.already_gone == 1
    kept = {"var/tmp/build.o", "var/log/syslog.1", "home/bob/.cache/top-level-file",
            "var/tmp/alice-stuff/sub", "var/tmp/alice-stuff",
            "var/tmp/alice-stuff/sub/new.txt"}
    expected = before - (rig.tree.light_removes - kept)
    assert all_paths(root) == expected
    assert (root / "var/log/syslog.1").read_text() == "new content\n"


def test_tampered_plan_rows_are_refused(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    plan = rig.engine.preview(LIGHT)
    conn = sqlite3.connect(rig.state / "reset.db")
    with conn:
        conn.execute("UPDATE reset_items SET path = ? WHERE plan_id = ? AND seq = 0",
                     (b"etc/fstab", plan.id))
    conn.close()
    before = _m(rig.root / "etc")
    with pytest.raises(DigestMismatch):
        rig.engine.execute(plan.id, plan.digest, ExecuteOptions(), rig.journal)
    assert treemanifest.differences(before, _m(rig.root / "etc")) == []


@pytest.mark.parametrize("rel, anchor, why", [
    ("etc/fstab", "etc", "never touched"),
    ("boot/vmlinuz", "boot", "never touched"),
    ("proc/1/mem", "proc", "never touched"),
    ("home/../etc/passwd", "home", ".."),
    ("home//alice/x", "home", "normal form"),
    ("var/lib/ose/reset.db", "var/lib", "never touched"),
    ("var/lib", "var", "holds /var/lib/ose"),
    ("etc/passwd", "var/tmp", "not inside /var/tmp"),
    ("", "var", "root itself"),
])
def test_remover_refuses_whatever_a_plan_says(tmp_path: Path, rel: str, anchor: str,
                                              why: str) -> None:
    root = tmp_path / "r"
    for d in ("etc", "boot", "proc/1", "var/lib/ose", "home/alice"):
        (root / d).mkdir(parents=True)
    (root / "etc/fstab").write_text("x")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        refused = frozenset({"proc", "sys", "dev", "boot", "etc/fstab", "run",
                             "var/lib/ose"})
        rm = Remover(fd, refused, frozenset(), dry_run=False)
        item = Planned(rel=rel, kind="file", size=1, uid=0, ino=1, dev=1, mtime_ns=0,
                       anchor=anchor)
        why_not = rm.remove(item)
        rm.close()
    finally:
        os.close(fd)
    assert why_not is not None and why in why_not
    assert (root / "etc/fstab").exists()


def test_a_user_whose_home_is_a_system_tree_is_not_cleaned(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    with open(rig.root / "etc/passwd", "a") as f:
        f.write("mallory:x:1005:1005::/etc:/bin/sh\nsrv:x:1006:1006::/var:/bin/sh\n")
    (rig.root / "etc/.cache").mkdir()
    (rig.root / "etc/.cache/x").write_text("x")
    (rig.root / "etc/.hidden-conf").write_text("x")
    for profile in ("light", "medium", "nuclear"):
        plan = rig.engine.preview(Selection(profile=profile, exclude_packages=("*",)))
        paths = {i.path for i in rig.engine.plan_items(plan.id, 0, 10000)}
        assert not any(p.startswith("etc/") for p in paths), profile
        assert "etc" not in plan.analysis.skel_trees
        assert not any(p.startswith("var/") and p.split("/")[1].startswith(".")
                       for p in paths)
