from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oseprovd.errors import InvalidArguments
from oseprovd.snapshots.config import default_configs, load_configs
from oseprovd.snapshots.errors import InvalidSnapshotId
from oseprovd.snapshots.ids import check_snapshot_id, make_snapshot_id, split_snapshot_id


@pytest.mark.parametrize("bad", ["../../x", "-y", "x", "root-0", "root-01", "Root-1",
                                 "root-1/..", "root-1\n", "root -1", "", "a" * 33 + "-1",
                                 "root-12345678901", ".snap-1", "root-1 "])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(InvalidSnapshotId):
        check_snapshot_id(bad)


@given(st.text(max_size=40))
def test_any_valid_id_is_a_plain_file_name(s: str) -> None:
    try:
        check_snapshot_id(s)
    except InvalidSnapshotId:
        return
    assert "/" not in s and not s.startswith(("-", ".")) and "\0" not in s
    assert len(s) <= 43 and s.isascii() and s == s.strip()


def test_make_and_split() -> None:
    assert make_snapshot_id("root", 12) == "root-12"
    assert split_snapshot_id("my_data-3") == ("my_data", 3)


def test_load_configs(tmp_path: Path) -> None:
    (tmp_path / "home.toml").write_text(
        'backend = "btrfs"\npath = "/home"\nsnapshot_dir = "/home/.ose-snapshots"\n'
        "[retention]\nnumber_limit = 5\n")
    (tmp_path / "etc.toml").write_text(
        'backend = "copy"\npath = "/"\nsnapshot_dir = "/var/lib/ose/s"\n'
        'whole_paths = ["etc/ssh"]\n')
    cfgs = load_configs(tmp_path)
    assert sorted(cfgs) == ["etc", "home"]
    assert cfgs["home"].retention.number_limit == 5
    assert cfgs["home"].retention.timeline_limit_daily == 10  # snapper's default
    assert cfgs["etc"].whole_paths == ("etc/ssh",)


@pytest.mark.parametrize("body", [
    'backend = "zfs"\npath = "/"\nsnapshot_dir = "/s"\n',
    'backend = "copy"\npath = "relative"\nsnapshot_dir = "/s"\n',
    'backend = "copy"\npath = "/"\nsnapshot_dir = "/s/../etc"\n',
    'backend = "copy"\npath = "/"\nsnapshot_dir = "/s"\nwhole_paths = ["../x"]\n',
    'backend = "copy"\npath = "/"\nsnapshot_dir = "/s"\nunknown = 1\n',
    'name = "other"\nbackend = "copy"\npath = "/"\nsnapshot_dir = "/s"\n',
    "not toml [",
])
def test_bad_configs(tmp_path: Path, body: str) -> None:
    (tmp_path / "x.toml").write_text(body)
    with pytest.raises(InvalidArguments):
        load_configs(tmp_path)


def test_bad_config_file_name(tmp_path: Path) -> None:
    (tmp_path / "Bad-Name.toml").write_text('backend = "copy"\n')
    with pytest.raises(InvalidArguments):
        load_configs(tmp_path)


MOUNTINFO = (
    "22 1 0:21 / / rw,relatime shared:1 - {fs} /dev/vda1 rw\n"
    "23 22 0:5 / /dev rw - devtmpfs udev rw\n"
)


def test_default_config_from_mounts() -> None:
    btrfs = default_configs(MOUNTINFO.format(fs="btrfs"))["root"]
    assert btrfs.backend == "btrfs" and btrfs.root_subvolume
    ext4 = default_configs(MOUNTINFO.format(fs="ext4"))["root"]
    assert ext4.backend == "copy" and ext4.path == Path("/")
