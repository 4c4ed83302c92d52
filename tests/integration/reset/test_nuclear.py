"""nuclear on the real Debian 12 root: the package set back to the baseline exactly
(baseline packages removed since are installed again, at their baseline version, from
the .deb in the target's apt cache; one without a .deb is listed before Execute and
reported after), apt's and dpkg's configuration back to their defaults, and a
rollback that restores the package set and every file.

Ground truth: dpkg-query --admindir on the target (versions, md5sums of conffiles),
hashes and manifests taken by test code.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from oseprovd.reset.models import ExecuteOptions, Selection
from tests.harness import treemanifest
from tests.harness.components import require
from tests.integration.reset.debian_root import build_deb, dpkg_install
from tests.integration.reset.test_debian import (  # noqa: F401  (the fixture)
    Target,
    dpkg_query,
    installed,
    make_lived_in,
    target,
)

pytestmark = [pytest.mark.root]

KEEP_DEB = "var/cache/apt/archives/ose-keep_1.0_all.deb"


def dpkg_remove(root: Path, name: str, purge: bool) -> None:
    subprocess.run([require("dpkg", "removing from the target"), f"--root={root}",
                    "--force-script-chrootless", "--force-not-root",
                    "-P" if purge else "-r", "--", name], check=True, capture_output=True)


def conffile_md5s(root: Path, *packages: str) -> dict[str, str]:
    out = {}
    for line in dpkg_query(root, "-W", "-f", "${Conffiles}\n", *packages).splitlines():
        f = line.split()
        if len(f) >= 2 and f[0].startswith("/") and "obsolete" not in f[2:]:
            out[f[0].lstrip("/")] = f[1]
    return out


def test_nuclear_brings_the_baseline_package_set_back(
        target: Target, tmp_path: Path) -> None:  # noqa: F811
    root = target.root
    make_lived_in(root)
    keep = build_deb(tmp_path, "ose-keep", {"/usr/share/ose-keep/data": "v1\n",
                                            "/etc/ose-keep.conf": "k=1\n"},
                     conffiles=("/etc/ose-keep.conf",))
    gone = build_deb(tmp_path, "ose-gone", {"/usr/bin/ose-gone": "#!/bin/sh\n"})
    dpkg_install(root, keep)
    dpkg_install(root, gone)
    shutil.copy2(keep, root / KEEP_DEB)  # as apt leaves it in its cache
    target.engine.capture_baseline()
    base_set = installed(root)
    assert {("ose-keep", "1.0"), ("ose-gone", "1.0")} <= base_set
    # after the baseline: both removed (ose-gone's .deb is nowhere on the target),
    # apt's and dpkg's configuration changed
    dpkg_remove(root, "ose-keep", purge=True)
    dpkg_remove(root, "ose-gone", purge=False)
    (root / "etc/apt/apt.conf.d/01autoremove").write_text("// mine\n")
    (root / "etc/dpkg/dpkg.cfg").unlink()
    (root / "etc/apt/apt.conf.d/99mine").write_text('APT::Get::Assume-Yes "true";\n')
    (root / "etc/dpkg/dpkg.cfg.d/unsafe-io").write_text("force-unsafe-io\n")
    truth = conffile_md5s(root, "apt", "dpkg")
    assert {"etc/apt/apt.conf.d/01autoremove", "etc/dpkg/dpkg.cfg"} <= set(truth)
    before_set = installed(root)
    assert before_set == base_set - {("ose-keep", "1.0"), ("ose-gone", "1.0")}
    before_w = dpkg_query(root, "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\n")
    before = treemanifest.manifest(root, exclude=(b"var/lib/ose",))

    plan = target.engine.preview(Selection(profile="nuclear"))
    installs = {(c.name, c.version, c.deb) for c in plan.analysis.package_changes
                if c.action == "install"}
    assert installs == {("ose-keep", "1.0", KEEP_DEB), ("ose-gone", "1.0", "")}
    assert any("ose-gone" in n and "not be reinstalled" in n for n in plan.analysis.notes)
    assert plan.packages_after == plan.packages_before + 1
    restores = {c[0] for c in plan.analysis.conffiles_restored}
    assert {"etc/apt/apt.conf.d/01autoremove", "etc/dpkg/dpkg.cfg"} <= restores
    items = {i.path for i in target.engine.plan_items(plan.id, 0, 10000)}
    assert {"etc/apt/apt.conf.d/99mine", "etc/dpkg/dpkg.cfg.d/unsafe-io"} <= items
    assert "etc/apt/apt.conf.d/70debconf" not in items  # debconf's: dpkg owns it

    r = target.engine.execute(plan.id, plan.digest, ExecuteOptions(), target.journal)
    assert r.packages_installed == ("ose-keep",)
    assert [n.split(":")[0] for n in r.packages_not_installed] == ["ose-gone"]
    assert installed(root) == base_set - {("ose-gone", "1.0")}  # ground truth: dpkg
    assert dpkg_query(root, "-W", "-f", "${Version} ${db:Status-Abbrev}\n",
                      "ose-keep").split() == ["1.0", "ii"]
    assert (root / "usr/share/ose-keep/data").read_text() == "v1\n"
    assert (root / "etc/ose-keep.conf").read_text() == "k=1\n"
    # apt's and dpkg's conffiles hash to dpkg's md5sums again, extras gone
    for rel, md5 in conffile_md5s(root, "apt", "dpkg").items():
        assert hashlib.md5((root / rel).read_bytes()).hexdigest() == md5, rel
    assert not (root / "etc/apt/apt.conf.d/99mine").exists()
    assert not (root / "etc/dpkg/dpkg.cfg.d/unsafe-io").exists()
    assert (root / "etc/apt/apt.conf.d/70debconf").exists()

    target.engine.rollback(r.execution, target.journal)
    assert installed(root) == before_set
    # every package dpkg knows, with its state (ose-gone stays "removed, config")
    assert dpkg_query(root, "-W", "-f",
                      "${Package} ${Version} ${db:Status-Abbrev}\n") == before_w
    assert "ose-keep" not in dpkg_query(root, "-W", "-f", "${Package}\n")
    diff = treemanifest.differences(before, treemanifest.manifest(
        root, exclude=(b"var/lib/ose",)))
    assert diff == [], "\n".join(diff)


def test_btrfs_baseline_snapshot_is_offered_and_rolls_the_root_back(
        target: Target, tmp_path: Path) -> None:  # noqa: F811
    """On btrfs CaptureBaseline takes an important snapshot of the root; Analyze and
    Preview offer it; rollback_to_baseline swaps the (non-root) subvolume back to it
    and the tree equals the manifest taken at baseline time. On ext4 there is none."""
    from oseprovd.errors import NotApplicable

    root = target.root
    make_lived_in(root)
    b = target.engine.capture_baseline()
    if target.backend != "btrfs":
        assert b.snapshot is None
        assert target.engine.analyze(Selection(profile="light")).baseline_rollback is None
        with pytest.raises(NotApplicable):
            target.engine.rollback_to_baseline()
        return
    assert b.snapshot is not None
    snaps = target.engine.snapshots
    assert snaps is not None and snaps.get_snapshot(b.snapshot).important
    base_tree = treemanifest.manifest(root, exclude=(b"var/lib/ose",))
    base_set = installed(root)
    # ground truth: the kernel lists a read-only subvolume for it
    listing = subprocess.run([require("btrfs", "btrfs-progs"), "subvolume", "list", "-r",
                              "--", str(root.parent)], check=True, capture_output=True,
                             text=True).stdout
    assert len(listing.splitlines()) == 1, listing
    # lived in after the baseline
    dpkg_install(root, build_deb(tmp_path, "ose-late", {"/usr/bin/ose-late": "x\n"}))
    shutil.rmtree(root / "home/alice/Documents")
    (root / "etc/debian_version").write_text("13.0-mine\n")
    (root / "srv/new.txt").write_text("new\n")
    assert installed(root) != base_set

    a = target.engine.analyze(Selection(profile="light"))
    assert a.baseline_rollback == b.snapshot
    assert any(b.snapshot in n and "reboot" in n for n in a.notes)
    plan = target.engine.preview(Selection(profile="nuclear"))
    assert plan.analysis.baseline_rollback == b.snapshot

    r = target.engine.rollback_to_baseline()
    assert r.snapshot == b.snapshot and r.previous is not None
    assert not r.reboot_required  # a swapped subvolume, not the running root
    assert installed(root) == base_set  # ground truth: dpkg-query on the target
    diff = treemanifest.differences(base_tree, treemanifest.manifest(
        root, exclude=(b"var/lib/ose",)))
    assert diff == [], "\n".join(diff)


@pytest.mark.slow
@pytest.mark.parametrize(("step", "when", "then"), [
    ("reset.install", "after", "resume"),        # journaled, dpkg not run yet
    ("reset.install.done", "before", "resume"),  # dpkg ran, not journaled yet
    ("reset.install.done", "before", "rollback"),
])
def test_kill_during_nuclear_reinstall_then_recover(tmp_path: Path, step: str, when: str,
                                                    then: str) -> None:
    """SIGKILL around the reinstall step on the real root (copy store), then a
    restarted engine resumes (the baseline package at its version, dpkg-query) or
    rolls back (dpkg-query -W and the manifest of before)."""
    import json
    import sys

    from oseprovd.reset.packages import AptChroot
    from oseprovd.snapshots.journal import read_journal
    from tests.harness.components import REPO_ROOT
    from tests.harness.loopfs import loop_fs
    from tests.integration.reset.debian_root import unpack_root
    from tests.unit.reset.livedin import LivedIn, open_rig

    with loop_fs(tmp_path, "ext4", size_mb=1500) as mnt:
        root = unpack_root(mnt / "root")
        (root / "var/lib/ose").mkdir(mode=0o700)
        make_lived_in(root)
        keep = build_deb(tmp_path, "ose-keep", {"/usr/share/ose-keep/data": "v1\n"})
        dpkg_install(root, keep)
        shutil.copy2(keep, root / KEEP_DEB)
        rig = open_rig(tmp_path, root, LivedIn(root=root), packages=AptChroot())
        rig.engine.capture_baseline()
        base_set = installed(root)
        dpkg_remove(root, "ose-keep", purge=True)
        before_set = installed(root)
        before = treemanifest.manifest(root, exclude=(b"var/lib/ose",))
        plan = rig.engine.preview(Selection(profile="nuclear"))
        assert [c.name for c in plan.analysis.package_changes] == ["ose-keep"]
        rig.engine.close()
        rig.engine.store.close()
        spec = {"tmp": str(tmp_path), "root": str(root), "plan": plan.id,
                "digest": plan.digest, "action": "execute", "apt": True,
                "kill_step": step, "when": when}
        proc = subprocess.run([sys.executable, "-m", "tests.unit.reset.kill_child",
                               json.dumps(spec)], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=300, check=False)
        assert proc.returncode == -9, proc.stderr[-2000:]
        fresh = open_rig(tmp_path, root, LivedIn(root=root), packages=AptChroot())
        try:
            fresh.snapshots.recover(read_journal(fresh.snap_journal.path))
            (ex,) = fresh.engine.interrupted()
            if then == "resume":
                r = fresh.engine.resume(ex.id, read_journal(fresh.journal.path),
                                        fresh.journal)
                assert r.packages_installed == ("ose-keep",)
                assert installed(root) == base_set  # ground truth: dpkg-query
            fresh.engine.rollback(ex.id, fresh.journal)
            assert installed(root) == before_set
            diff = treemanifest.differences(before, treemanifest.manifest(
                root, exclude=(b"var/lib/ose",)))
            assert diff == [], "\n".join(diff)
        finally:
            fresh.engine.close()
            fresh.engine.store.close()
