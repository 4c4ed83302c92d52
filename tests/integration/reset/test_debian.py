"""Reset on a real debootstrapped Debian 12 root, made lived-in, on real filesystems:
ext4 on a loop image (copy rollback store) and a btrfs subvolume (btrfs snapshot).

Ground truth: dpkg-query with --admindir on the target, getent in a chroot, and
sha256 + lstat + xattrs + ACL manifests taken by test code.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oseprovd.reset.accounts import Userdel
from oseprovd.reset.baseline import FileBaselineRepository
from oseprovd.reset.engine import ResetEngine
from oseprovd.reset.models import ExecuteOptions, Selection
from oseprovd.reset.packages import AptChroot
from oseprovd.reset.planstore import PlanStore
from oseprovd.snapshots.copy_backend import CopyBackend
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.journal import FileJournal
from oseprovd.snapshots.models import SnapshotConfig
from oseprovd.snapshots.repository import SqliteSnapshotRepository, ensure_schema
from oseprovd.system.rootfs import TargetRoot
from tests.harness import treemanifest
from tests.harness.components import missing, require
from tests.harness.loopfs import loop_fs
from tests.integration.reset.debian_root import build_deb, dpkg_install, unpack_root
from tests.unit.reset.livedin import all_paths

pytestmark = [pytest.mark.root]


@dataclass
class Target:
    root: Path
    engine: ResetEngine
    journal: FileJournal
    backend: str


def _admindir(root: Path) -> str:
    return f"--admindir={root}/var/lib/dpkg"


def dpkg_query(root: Path, *args: str) -> str:
    return subprocess.run([require("dpkg-query", "ground truth"), _admindir(root), *args],
                          check=True, capture_output=True, text=True).stdout


def owned_by_dpkg(root: Path) -> set[str]:
    names = dpkg_query(root, "-W", "-f", "${Package}\n").split()
    out = dpkg_query(root, "-L", *names)
    return {line.strip("/") for line in out.splitlines() if line.startswith("/")}


@pytest.fixture(params=["ext4", "btrfs"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    fstype = request.param
    if fstype == "btrfs":
        from oseprovd.system import btrfs as btrfs_sys
        if not btrfs_sys.available():
            missing("the btrfsutil bindings")
    with loop_fs(tmp_path, fstype, size_mb=1500) as mnt:
        root = mnt / "root"
        if fstype == "btrfs":
            subprocess.run([require("btrfs", "btrfs-progs"), "subvolume", "create", "--",
                            str(root)], check=True, capture_output=True)
        unpack_root(root)
        cfg = SnapshotConfig(name="root", backend="btrfs" if fstype == "btrfs" else "copy",
                             path=root, snapshot_dir=mnt / ".snaps")
        conn = sqlite3.connect(tmp_path / "snap.db", isolation_level=None,
                               check_same_thread=False)
        ensure_schema(conn)
        backends: dict[str, object] = {"copy": CopyBackend()}
        if fstype == "btrfs":
            from oseprovd.snapshots.btrfs_backend import BtrfsBackend
            backends["btrfs"] = BtrfsBackend()
        snaps = SnapshotEngine({"root": cfg}, SqliteSnapshotRepository(conn),
                               backends, FileJournal(tmp_path / "snap.jsonl"))  # type: ignore[arg-type]
        state = root / "var/lib/ose"
        state.mkdir(mode=0o700)
        engine = ResetEngine(TargetRoot(root), PlanStore(state / "reset.db"),
                             FileBaselineRepository(state), snaps, state_dir=state,
                             workers=2, packages=AptChroot(), accounts=Userdel())
        try:
            yield Target(root, engine, FileJournal(tmp_path / "reset.jsonl"), fstype)
        finally:
            engine.close()
            engine.store.close()
            conn.close()


def make_lived_in(root: Path) -> set[str]:
    """Users with homes, caches, logs, temp files; returns what light must remove."""
    with open(root / "etc/passwd", "a") as f:
        f.write("alice:x:1000:1000:Alice:/home/alice:/bin/bash\n"
                "bob:x:1001:1001:Bob:/home/bob:/bin/bash\n")
    with open(root / "etc/group", "a") as f:
        f.write("alice:x:1000:\nbob:x:1001:\n")
    removes: set[str] = set()
    for user, uid in (("alice", 1000), ("bob", 1001)):
        home = root / "home" / user
        subprocess.run(["cp", "-a", "--", f"{root}/etc/skel", str(home)], check=True)
        (home / ".bashrc").write_text(f"# {user}'s own bashrc\nalias ll='ls -l'\n")
        (home / ".vimrc").write_text("set nu\n")
        (home / "Documents").mkdir()
        (home / "Documents/thesis.tex").write_text("\\documentclass{article}\n" * 100)
        for rel in (".cache/pip/http/a/b", ".cache/mozilla/firefox/x.sqlite",
                    ".cache/thumbnails/large/t.png"):
            p = home / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(os.urandom(4096))
        subprocess.run(["chown", "-R", f"{uid}:{uid}", "--", str(home)], check=True)
        for rel in (".cache/pip/http", ".cache/pip/http/a", ".cache/pip/http/a/b",
                    ".cache/mozilla", ".cache/mozilla/firefox",
                    ".cache/mozilla/firefox/x.sqlite", ".cache/thumbnails",
                    ".cache/thumbnails/large", ".cache/thumbnails/large/t.png"):
            removes.add(f"home/{user}/{rel}")
    for rel, data in (("var/log/dpkg.log.1", "old"), ("var/log/apt/term.log.1.gz", "gz"),
                      ("var/tmp/build/obj.o", "o"), ("var/log/alternatives.log.2.gz", "z")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(data)
        removes.add(rel)
    removes.add("var/tmp/build")
    (root / "opt/vendor/bin").mkdir(parents=True)
    (root / "opt/vendor/bin/app").write_text("#!/bin/sh\n")
    debs = {f"var/cache/apt/archives/{n}" for n in os.listdir(root / "var/cache/apt/archives")
            if n.endswith(".deb")}
    assert debs, "debootstrap left no .debs in the archive cache"
    return removes | debs


def test_baseline_matches_dpkg_and_the_chroot(target: Target) -> None:
    root = target.root
    make_lived_in(root)
    base = target.engine.capture_baseline()
    assert target.engine.baseline() == base  # stored and read back
    truth = {tuple(line.split(" ")[1:]) for line in dpkg_query(
        root, "-W", "-f", "${db:Status-Status} ${Package} ${Version} ${Architecture}\n"
    ).splitlines() if line.startswith("installed ")}
    assert {(p.name, p.version, p.architecture) for p in base.packages} == truth
    conf_truth = set()
    for block in dpkg_query(root, "-W", "-f", "${Package}\\n${Conffiles}\\n").split("\n"):
        f = block.split()
        if len(f) >= 2 and f[0].startswith("/"):
            conf_truth.add((f[0], f[1]))
    assert {(c.path, c.md5) for c in base.conffiles} == conf_truth
    assert conf_truth  # minbase has conffiles (e.g. /etc/debian_version's package)
    getent = subprocess.run([require("chroot", "ground truth"), str(root), "getent",
                             "passwd"], check=True,
                            capture_output=True, text=True).stdout
    assert {(u.name, u.id) for u in base.users} == {
        (f.split(":")[0], int(f.split(":")[2])) for f in getent.splitlines()}
    groups = subprocess.run([require("chroot", "ground truth"), str(root), "getent",
                             "group"], check=True, capture_output=True, text=True).stdout
    assert {(g.name, g.id) for g in base.groups} == {
        (f.split(":")[0], int(f.split(":")[2])) for f in groups.splitlines()}
    links = {(os.path.relpath(dp, root), n) for dp, _, fs in os.walk(root / "etc/systemd")
             for n in fs if os.path.islink(os.path.join(dp, n))
             and dp.endswith((".wants", ".requires"))}
    assert {(s.wants_dir, s.unit) for s in base.services} == links


def test_light_then_rollback_and_medium_lists_new_packages(target: Target,
                                                           tmp_path: Path) -> None:
    root = target.root
    planted = make_lived_in(root)
    target.engine.capture_baseline()
    deb = build_deb(tmp_path, "ose-extra", {"/opt/ose-extra/data.txt": "data\n",
                                            "/usr/share/doc/ose-extra/README": "r\n"})
    dpkg_install(root, deb)
    assert "ose-extra" in dpkg_query(root, "-W", "-f", "${Package}\n").split()
    owned = owned_by_dpkg(root)
    before_paths = all_paths(root)
    treemanifest.manifest(root, exclude=(b"var/lib/ose",))
    before = treemanifest.manifest(root, exclude=(b"var/lib/ose",))

    plan = target.engine.preview(Selection(profile="light"))
    items = {i.path for i in target.engine.plan_items(plan.id, 0, 10000)}
    assert planted <= items
    assert not items & owned, sorted(items & owned)[:5]
    assert plan.analysis.baseline_source == "captured"
    assert plan.packages_before == plan.packages_after
    result = target.engine.execute(plan.id, plan.digest, ExecuteOptions(), target.journal)
    assert result.skipped_count == 0, result.skipped[:5]
    assert all_paths(root) == before_paths - items
    # dpkg's view is unchanged: every file it lists that existed still exists
    assert all(os.path.lexists(root / p) for p in owned if p in before_paths)
    target.engine.rollback(result.execution, target.journal)
    assert treemanifest.differences(before, treemanifest.manifest(
        root, exclude=(b"var/lib/ose",))) == []

    deep = target.engine.preview(Selection(profile="deep", exclude_packages=("*",)))
    deep_items = {i.path for i in target.engine.plan_items(deep.id, 0, 10000)}
    assert "opt/vendor/bin/app" in deep_items
    assert not any(p.startswith("opt/ose-extra") for p in deep_items)  # dpkg's files


def installed(root: Path) -> set[tuple[str, str]]:
    return {tuple(line.split(" ", 2)[1:]) for line in dpkg_query(  # type: ignore[misc]
        root, "-W", "-f", "${db:Status-Status} ${Package} ${Version}\n").splitlines()
        if line.startswith("installed ")}


def test_medium_removes_new_packages_and_rollback_brings_them_back(
        target: Target, tmp_path: Path) -> None:
    root = target.root
    make_lived_in(root)
    target.engine.capture_baseline()
    base_set = installed(root)
    lib = build_deb(tmp_path, "ose-lib", {"/usr/lib/ose-lib/lib.so": "lib\n"})
    app = build_deb(tmp_path, "ose-app", {"/usr/bin/ose-app": "#!/bin/sh\n"},
                    depends="ose-lib")
    dpkg_install(root, lib)
    dpkg_install(root, app)
    with open(root / "var/lib/apt/extended_states", "a") as f:  # as apt records a dep
        f.write("Package: ose-lib\nArchitecture: amd64\nAuto-Installed: 1\n\n")
    with_new = installed(root)
    assert {n for n, _ in with_new - base_set} == {"ose-lib", "ose-app"}
    treemanifest.manifest(root, exclude=(b"var/lib/ose",))
    before = treemanifest.manifest(root, exclude=(b"var/lib/ose",))

    plan = target.engine.preview(Selection(profile="medium"))
    changes = {(c.name, c.requested) for c in plan.analysis.package_changes}
    assert changes == {("ose-app", True), ("ose-lib", False)}  # apt's autoremove
    assert plan.packages_after == plan.packages_before - 2
    assert plan.highest_risk == "destructive"
    result = target.engine.execute(plan.id, plan.digest, ExecuteOptions(), target.journal)
    assert set(result.packages_removed) == {"ose-app", "ose-lib"}
    assert installed(root) == base_set  # ground truth: dpkg-query on the target
    assert not (root / "usr/bin/ose-app").exists()
    # dotfiles back to /etc/skel's, as the user; the rest of the home stays
    skel_bashrc = (root / "etc/skel/.bashrc").read_bytes()
    assert (root / "home/alice/.bashrc").read_bytes() == skel_bashrc
    assert os.lstat(root / "home/alice/.bashrc").st_uid == 1000
    assert not (root / "home/alice/.vimrc").exists()
    assert (root / "home/alice/Documents/thesis.tex").exists()
    target.engine.rollback(result.execution, target.journal)
    assert installed(root) == with_new
    diff = treemanifest.differences(before, treemanifest.manifest(
        root, exclude=(b"var/lib/ose",)))
    assert diff == [], "\n".join(diff)


def test_deep_purges_and_empties_opt_then_rolls_back(target: Target, tmp_path: Path) -> None:
    root = target.root
    make_lived_in(root)
    target.engine.capture_baseline()
    base_set = installed(root)
    tool = build_deb(tmp_path, "ose-tool", {"/usr/bin/ose-tool": "#!/bin/sh\n",
                                            "/etc/ose-tool.conf": "x=1\n"},
                     conffiles=("/etc/ose-tool.conf",))
    dpkg_install(root, tool)
    (root / "etc/ose-tool.conf").write_text("x=2\n")  # modified by the admin
    (root / "var/lib/ose-tool/cache").mkdir(parents=True)  # the tool's own data
    (root / "var/lib/ose-tool/cache/index.db").write_text("rows\n")
    (root / "var/lib/ose-tool/state").write_text("1\n")
    (root / "usr/local/bin/mytool").write_text("#!/bin/sh\n")
    (root / "etc/debian_version").write_text("13.0-mine\n")  # base-files' conffile
    with open(root / "etc/adduser.conf", "a") as f:  # adduser's (arch all)
        f.write("DSHELL=/bin/zsh\n")
    before_set = installed(root)
    before = treemanifest.manifest(root, exclude=(b"var/lib/ose",))
    plan = target.engine.preview(Selection(profile="deep"))
    assert [(c.name, c.action) for c in plan.analysis.package_changes] == [
        ("ose-tool", "purge")]
    items = {i.path for i in target.engine.plan_items(plan.id, 0, 10000)}
    assert {"opt/vendor", "opt/vendor/bin/app", "usr/local/bin/mytool"} <= items
    data = {"var/lib/ose-tool", "var/lib/ose-tool/cache", "var/lib/ose-tool/cache/index.db",
            "var/lib/ose-tool/state"}
    assert {p for p in items if p.startswith("var/lib/")} == data  # only the purged one's
    r = target.engine.execute(plan.id, plan.digest, ExecuteOptions(), target.journal)
    assert r.skipped_count == 0, r.skipped[:5]
    assert installed(root) == base_set
    # purged: dpkg no longer knows it at all (not even config-files), conffile gone
    status = dpkg_query(root, "-W", "-f", "${Package} ${db:Status-Abbrev}\n")
    assert "ose-tool" not in status
    assert not (root / "etc/ose-tool.conf").exists()
    assert not (root / "var/lib/ose-tool").exists()  # its data purged too
    assert not (root / "opt/vendor").exists() and (root / "opt").is_dir()
    # conffiles back to what dpkg recorded (ground truth: dpkg-query's md5sums)
    assert set(r.conffiles_restored) == {"etc/debian_version", "etc/adduser.conf"}
    truth = {}
    for line in dpkg_query(root, "-W", "-f", "${Conffiles}\n").splitlines():
        f = line.split()
        if len(f) >= 2 and f[0].startswith("/"):
            truth[f[0].lstrip("/")] = f[1]
    for rel in r.conffiles_restored:
        assert hashlib.md5((root / rel).read_bytes()).hexdigest() == truth[rel], rel
    target.engine.rollback(r.execution, target.journal)
    assert (root / "etc/debian_version").read_text() == "13.0-mine\n"
    assert installed(root) == before_set
    assert (root / "etc/ose-tool.conf").read_text() == "x=2\n"
    diff = treemanifest.differences(before, treemanifest.manifest(
        root, exclude=(b"var/lib/ose",)))
    assert diff == [], "\n".join(diff)


def getent(root: Path, db: str) -> set[str]:
    return set(subprocess.run([require("chroot", "ground truth"), str(root), "getent", db],
                              check=True,
                              capture_output=True, text=True).stdout.splitlines())


def test_nuclear_removes_new_users_and_homes_then_rolls_back(target: Target) -> None:
    root = target.root
    make_lived_in(root)
    target.engine.capture_baseline()
    subprocess.run(["chroot", str(root), "useradd", "-m", "-u", "1002", "-U", "carol"],
                   check=True, capture_output=True)
    (root / "home/carol/diary.txt").write_text("dear diary\n")
    base_passwd = {e for e in getent(root, "passwd") if not e.startswith("carol:")}
    before = treemanifest.manifest(root, exclude=(b"var/lib/ose",))
    before_passwd, before_group = getent(root, "passwd"), getent(root, "group")
    plan = target.engine.preview(Selection(profile="nuclear"))
    assert plan.analysis.users_removed == ("carol",)
    assert "home/carol" not in plan.analysis.skel_trees
    assert "home/alice" in plan.analysis.skel_trees
    assert plan.highest_risk == "destructive"
    r = target.engine.execute(plan.id, plan.digest, ExecuteOptions(), target.journal)
    assert r.skipped_count == 0, r.skipped[:5]
    assert getent(root, "passwd") == base_passwd  # ground truth: getent in the root
    assert not any(e.startswith("carol:") for e in getent(root, "group"))
    assert not (root / "home/carol").exists()
    assert not (root / "home/alice/Documents").exists()
    skel = (root / "etc/skel/.bashrc").read_bytes()
    assert (root / "home/alice/.bashrc").read_bytes() == skel
    target.engine.rollback(r.execution, target.journal)
    assert getent(root, "passwd") == before_passwd and getent(root, "group") == before_group
    diff = treemanifest.differences(before, treemanifest.manifest(
        root, exclude=(b"var/lib/ose",)))
    assert diff == [], "\n".join(diff)


KILL_RUNS = 4


@pytest.mark.slow
@pytest.mark.parametrize("run", range(KILL_RUNS))
def test_kill_during_medium_then_recover(tmp_path: Path, run: int) -> None:
    """SIGKILL during a medium execution (files, skel, apt) on the real root, then
    recover as a restarted daemon: resume gives the planned end state (dpkg-query),
    rollback the state before (dpkg-query + manifest)."""
    import json
    import random
    import sys

    from oseprovd.snapshots.journal import read_journal
    from tests.harness.components import REPO_ROOT
    from tests.unit.reset.livedin import LivedIn, open_rig

    rnd = random.Random(1000 + run + int(os.environ.get("OSE_KILL_SEED", "0")))
    with loop_fs(tmp_path, "ext4", size_mb=1500) as mnt:
        root = unpack_root(mnt / "root")
        (root / "var/lib/ose").mkdir(mode=0o700)
        make_lived_in(root)
        rig = open_rig(tmp_path, root, LivedIn(root=root), packages=AptChroot())
        rig.engine.capture_baseline()
        base_set = installed(root)
        lib = build_deb(tmp_path, "ose-lib", {"/usr/lib/ose-lib/lib.so": "lib\n"})
        app = build_deb(tmp_path, "ose-app", {"/usr/bin/ose-app": "#!/bin/sh\n"},
                        depends="ose-lib")
        dpkg_install(root, lib)
        dpkg_install(root, app)
        with_new = installed(root)
        before = treemanifest.manifest(root, exclude=(b"var/lib/ose",))
        plan = rig.engine.preview(Selection(profile="medium"))
        rig.engine.close()
        rig.engine.store.close()
        spec = {"tmp": str(tmp_path), "root": str(root), "plan": plan.id,
                "digest": plan.digest, "action": "execute", "apt": True,
                "kill_at": rnd.randint(2, 12), "when": rnd.choice(["before", "after"])}
        proc = subprocess.run([sys.executable, "-m", "tests.unit.reset.kill_child",
                               json.dumps(spec)], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=300, check=False)
        assert proc.returncode in (-9, 0), proc.stderr[-2000:]
        fresh = open_rig(tmp_path, root, LivedIn(root=root), packages=AptChroot())
        try:
            fresh.snapshots.recover(read_journal(fresh.snap_journal.path))
            fresh.engine.interrupted()
            execs = fresh.engine.list_executions()
            if not execs:
                assert installed(root) == with_new
                return
            ex = execs[0]
            if run % 2 == 0:
                fresh.engine.resume(ex.id, read_journal(fresh.journal.path), fresh.journal)
                assert installed(root) == base_set
                fresh.engine.rollback(ex.id, fresh.journal)
            elif fresh.engine.get_execution(ex.id).state != "rolled_back":
                fresh.engine.rollback(ex.id, fresh.journal)
            assert installed(root) == with_new
            diff = treemanifest.differences(before, treemanifest.manifest(
                root, exclude=(b"var/lib/ose",)))
            assert diff == [], "\n".join(diff)
        finally:
            fresh.engine.close()
            fresh.engine.store.close()
