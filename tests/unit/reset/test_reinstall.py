"""nuclear's reinstall helpers against real dpkg-deb: a .deb is used only when its
control fields are the baseline's (name, version, arch), and what it unpacks is
listed for the rollback point; .deb paths never reach dpkg's argv unchecked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from oseprovd.errors import InvalidArguments
from oseprovd.reset import reinstall
from oseprovd.reset.packages import AptChroot
from oseprovd.system.rootfs import TargetRoot
from tests.harness.components import require
from tests.integration.reset.debian_root import build_deb

ARCH = "var/cache/apt/archives"


def _root(tmp_path: Path) -> TargetRoot:
    require("dpkg-deb", "reading .debs")
    (tmp_path / "root" / ARCH).mkdir(parents=True)
    (tmp_path / "root/usr/share").mkdir(parents=True)
    return TargetRoot(tmp_path / "root")


def test_find_deb_checks_the_control_fields(tmp_path: Path) -> None:
    root = _root(tmp_path)
    deb = build_deb(tmp_path, "ose-a", {"/usr/share/ose-a/x": "x\n", "/etc/ose-a": "a\n"})
    shutil.copy(deb, root.path / ARCH / "ose-a_1.0_all.deb")
    assert reinstall.find_deb(root, "ose-a", "1.0", "all") == f"{ARCH}/ose-a_1.0_all.deb"
    assert reinstall.find_deb(root, "ose-a", "1.1", "all") == ""  # not that version
    # a file named like another package (or version) is not that package
    shutil.copy(deb, root.path / ARCH / "ose-b_1.0_all.deb")
    assert reinstall.find_deb(root, "ose-b", "1.0", "all") == ""
    (root.path / ARCH / "ose-c_1.0_all.deb").write_bytes(b"not a deb")
    assert reinstall.find_deb(root, "ose-c", "1.0", "all") == ""
    (root.path / ARCH / "ose-d_1.0_all.deb").symlink_to("ose-a_1.0_all.deb")
    assert reinstall.find_deb(root, "ose-d", "1.0", "all") == ""
    # epochs: apt's file names escape ':' as %3a
    assert reinstall.deb_name("x", "2:1.0", "amd64") == "x_2%3a1.0_amd64.deb"


def test_deb_files_lists_files_and_only_new_directories(tmp_path: Path) -> None:
    root = _root(tmp_path)
    deb = build_deb(tmp_path, "ose-a", {"/usr/share/ose-a/x": "x\n", "/etc/ose-a": "a\n"})
    shutil.copy(deb, root.path / ARCH / "ose-a_1.0_all.deb")
    got = set(reinstall.deb_files(root, f"{ARCH}/ose-a_1.0_all.deb"))
    # usr and usr/share exist: not listed; etc doesn't: listed (a rollback removes it)
    assert got == {"etc", "etc/ose-a", "usr/share/ose-a", "usr/share/ose-a/x"}


@pytest.mark.parametrize("bad", ["../x.deb", "-x.deb", "a/../b.deb", "x.tar", "/abs.deb",
                                 "a b.deb", ""])
def test_install_refuses_bad_deb_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidArguments):
        AptChroot(chroot="/nonexistent", dpkg="/nonexistent").install_debs(tmp_path, [bad])
