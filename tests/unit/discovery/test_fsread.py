"""Reading the target root: symlinks stay inside it, network mounts are never entered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oseprovd.discovery.fsread import (
    MountEntry,
    MountTable,
    RemoteFilesystem,
    TargetReader,
    parse_cpulist,
    parse_mountinfo,
)
from tests.unit.discovery.helpers import symlink, write


def test_absolute_and_dotdot_links_resolve_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "usr/lib/os-release", "ID=sandbox\n")
    symlink(root, "etc/os-release", "../usr/lib/os-release")
    symlink(root, "etc/escape", "../../../../../../etc/hostname")
    symlink(root, "etc/absolute", "/usr/lib/os-release")
    write(root, "etc/hostname", "inside\n")
    reader = TargetReader(root)
    assert reader.read_text("etc/os-release") == "ID=sandbox\n"
    assert reader.read_text("etc/absolute") == "ID=sandbox\n"  # not the host's file
    assert reader.read_text("etc/escape") == "inside\n"  # '..' stops at the root
    assert reader.read_text("../../etc/hostname") == "inside\n"


def test_symlink_loop_is_missing_not_a_hang(tmp_path: Path) -> None:
    symlink(tmp_path, "a", "b")
    symlink(tmp_path, "b", "a")
    assert TargetReader(tmp_path).read_text("a") is None


def test_fifo_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    assert TargetReader(tmp_path).read_bytes("pipe") is None


def test_network_mount_is_never_entered(tmp_path: Path) -> None:
    write(tmp_path, "srv/share/secret.conf", "x\n")
    write(tmp_path, "etc/ok.conf", "y\n")
    nfs = MountEntry(mount_id=50, parent_id=1, major=0, minor=55, root="/",
                     mountpoint=str(tmp_path / "srv/share"), options="rw", fstype="nfs4",
                     source="server:/export", super_options="")
    reader = TargetReader(tmp_path, MountTable([nfs]))
    with pytest.raises(RemoteFilesystem):
        reader.resolve("srv/share/secret.conf")
    assert reader.read_text("srv/share/secret.conf") is None
    assert reader.lstat("srv/share/secret.conf") is None
    assert not reader.exists("srv/share")
    assert reader.listdir("srv/share") == []
    assert reader.read_text("etc/ok.conf") == "y\n"


def test_mountinfo_parsing_unescapes_and_flags_remote() -> None:
    entries = parse_mountinfo(
        "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw,errors=x\n"
        "40 22 0:44 / /home autofs rw shared:3 - autofs systemd-1 rw,fd=51\n")
    assert entries[0].mountpoint == "/mnt/my disk" and entries[0].fstype == "ext3"
    assert (entries[0].major, entries[0].minor) == (98, 0) and not entries[0].remote
    assert entries[1].remote
    table = MountTable(entries)
    assert table.is_under_remote("/home/user/x") and not table.is_under_remote("/homer")


def test_cpulist() -> None:
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("") == []
