"""Browse mounts of btrfs snapshots: what the kernel says about them, not what we asked."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from oseprovd.errors import Busy, NotFound
from oseprovd.snapshots.errors import InvalidSnapshotId
from tests.harness.components import require
from tests.integration.snapshots.conftest import Rig

NOBODY = 65534


def findmnt_options(path: Path) -> set[str] | None:
    """Per-mount options of the mount whose target is exactly `path`, from findmnt(8)."""
    r = subprocess.run([require("findmnt", "util-linux"), "-n", "-o", "VFS-OPTIONS",
                        "--mountpoint", str(path)], capture_output=True, text=True)
    return set(r.stdout.strip().split(",")) if r.returncode == 0 and r.stdout.strip() else None


def setup_mounts(rig: Rig, tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    rig.engine.mounts_dir = Path(os.path.realpath(state / "mounts"))
    return rig.engine.mounts_dir


def test_browse_mount_is_ro_nosuid_nodev_noexec(btrfs: Rig, tmp_path: Path) -> None:
    mounts_dir = setup_mounts(btrfs, tmp_path)
    live = btrfs.live
    (live / "file.txt").write_text("hello")
    # A program that reports its effective uid, setuid to nobody: run by root from the
    # live tree it runs as nobody (the control: this filesystem honours setuid).
    idbin = live / "whoami-suid"
    shutil.copyfile(require("id", "coreutils"), idbin)
    os.chown(idbin, NOBODY, NOBODY)
    os.chmod(idbin, 0o4755)
    live_out = subprocess.run([str(idbin), "-u"], capture_output=True, text=True, check=True)
    assert live_out.stdout.strip() == str(NOBODY)

    snap = btrfs.engine.create_snapshot("data", "browse").id
    path = btrfs.engine.mount_snapshot(snap)
    try:
        assert path == mounts_dir / snap
        opts = findmnt_options(path)
        assert opts is not None and {"ro", "nosuid", "nodev", "noexec"} <= opts, opts
        st = os.lstat(mounts_dir)
        assert st.st_uid == 0 and st.st_mode & 0o7777 == 0o700
        assert (path / "file.txt").read_text() == "hello"
        with pytest.raises(OSError) as exc:
            (path / "new.txt").write_text("x")
        assert exc.value.errno == errno.EROFS
        # The setuid program inside the snapshot does not run at all (noexec), as root.
        with pytest.raises(PermissionError):
            subprocess.run([str(path / "whoami-suid"), "-u"], capture_output=True)
        assert os.lstat(path / "whoami-suid").st_mode & 0o4000  # the bit is there
        # Mounting again gives the same place, no second mount.
        assert btrfs.engine.mount_snapshot(snap) == path
        mountinfo = Path("/proc/self/mountinfo").read_text()
        assert sum(f" {path} " in line for line in mountinfo.splitlines()) == 1

        # In use: a plain unmount is refused, nothing is torn down under a user.
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(Busy):
                btrfs.engine.umount_snapshot(snap)
        finally:
            os.close(fd)
        btrfs.engine.umount_snapshot(snap)
        assert findmnt_options(path) is None
        assert not path.exists()
        with pytest.raises(NotFound):
            btrfs.engine.umount_snapshot(snap)
    finally:
        btrfs.engine.release_mounts()


def test_ids_and_release(btrfs: Rig, tmp_path: Path) -> None:
    mounts_dir = setup_mounts(btrfs, tmp_path)
    for bad in ("../x", "-y", "data-1/..", "data-0", "", "data-1\n"):
        with pytest.raises(InvalidSnapshotId):
            btrfs.engine.mount_snapshot(bad)
        with pytest.raises(InvalidSnapshotId):
            btrfs.engine.umount_snapshot(bad)
    with pytest.raises(NotFound):  # valid, but not a recorded snapshot
        btrfs.engine.mount_snapshot("data-42")
    assert not (mounts_dir / "data-42").exists()

    a = btrfs.engine.create_snapshot("data").id
    b = btrfs.engine.create_snapshot("data").id
    btrfs.engine.mount_snapshot(a)
    btrfs.engine.mount_snapshot(b)
    # Deleting a mounted snapshot unmounts it first.
    assert btrfs.engine.delete_snapshots([b]) == [b]
    assert findmnt_options(mounts_dir / b) is None
    assert btrfs.engine.release_mounts() == [a]
    assert findmnt_options(mounts_dir / a) is None
    assert list(mounts_dir.iterdir()) == []
