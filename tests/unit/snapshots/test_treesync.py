"""treesync and diff on plain directories (no loop image, no root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oseprovd.snapshots import treesync
from oseprovd.snapshots.diff import diff_dirs
from oseprovd.snapshots.errors import BackendFailed


def _tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_bytes(b"one")
    (root / "g").write_bytes(b"two")
    os.link(root / "g", root / "a" / "g2")
    os.symlink("a/b/f", root / "s")
    os.utime(root / "g", ns=(1, 2_000_000_000))


def _state(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            st = os.lstat(p)
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else os.readlink(
                p) if p.is_symlink() else b""
            out[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns, data)
    return out


def test_restore_whole_tree(tmp_path: Path) -> None:
    saved, live = tmp_path / "saved", tmp_path / "live"
    _tree(saved)
    _tree(live)
    os.utime(live / "g", ns=(1, 2_000_000_000))
    (live / "a" / "b" / "f").write_bytes(b"changed")
    (live / "new").write_text("x")
    os.unlink(live / "s")
    s_fd = os.open(saved, os.O_RDONLY | os.O_DIRECTORY)
    l_fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        changes = {(e.path, e.change) for e in diff_dirs(s_fd, l_fd)}
        assert ("a/b/f", "content") in changes and ("new", "created") in changes
        assert ("s", "deleted") in changes
        ctx = treesync.SyncContext(op="0" * 16, live_root_fd=l_fd, same_inodes=False)
        treesync.restore_paths(ctx, s_fd, l_fd, [()])
        assert list(diff_dirs(s_fd, l_fd)) == []
    finally:
        os.close(s_fd)
        os.close(l_fd)
    assert _state(saved).keys() == _state(live).keys()
    assert os.stat(live / "g").st_ino == os.stat(live / "a" / "g2").st_ino


def test_too_deep_is_a_clear_error(tmp_path: Path) -> None:
    saved, live = tmp_path / "saved", tmp_path / "live"
    live.mkdir()
    p = saved
    for _ in range(treesync.MAX_DEPTH + 5):
        p = p / "d"
    p.mkdir(parents=True)
    s_fd = os.open(saved, os.O_RDONLY | os.O_DIRECTORY)
    l_fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ctx = treesync.SyncContext(op="0" * 16, live_root_fd=l_fd, same_inodes=False)
        with pytest.raises(BackendFailed):
            treesync.restore_paths(ctx, s_fd, l_fd, [()])
        with pytest.raises(BackendFailed):
            list(diff_dirs(s_fd, l_fd))
    finally:
        os.close(s_fd)
        os.close(l_fd)
