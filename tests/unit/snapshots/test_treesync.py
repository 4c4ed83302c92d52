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


def _changed_live(tmp_path: Path) -> tuple[Path, Path]:
    saved, live = tmp_path / "saved", tmp_path / "live"
    _tree(saved)
    _tree(live)
    (live / "a" / "b" / "f").write_bytes(b"changed")
    (live / "g").write_bytes(b"changed too")  # a/g2 is the same inode
    (live / "new").write_text("x")
    os.unlink(live / "s")
    os.symlink("elsewhere", live / "s")
    for root in (saved, live):  # the same directory times on both sides to start with
        for d in ("a/b", "a", "."):
            os.utime(root / d, ns=(3_000_000_000, 4_000_000_000))
    return saved, live


@pytest.mark.parametrize("paths", [
    [()],
    [("a", "b", "f"), ("g",), ("a", "g2"), ("s",), ("new",)],
    # overlapping: the same entries staged twice in one batch, in both orders
    [("a", "g2"), (), ("a",), ("g",), ("a", "b", "f"), ("a", "g2")],
])
def test_batched_restore_ends_as_the_saved_tree(tmp_path: Path,
                                                paths: list[tuple[str, ...]]) -> None:
    saved, live = _changed_live(tmp_path)
    s_fd = os.open(saved, os.O_RDONLY | os.O_DIRECTORY)
    l_fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        batch = treesync.Batch(l_fd)
        ctx = treesync.SyncContext(op="0" * 16, live_root_fd=l_fd, same_inodes=False,
                                   batch=batch)
        treesync.restore_paths(ctx, s_fd, l_fd, paths)
        # nothing replaced is visible before the commit: the old bytes are still there
        assert (live / "a" / "b" / "f").read_bytes() == b"changed"
        assert os.readlink(live / "s") == "elsewhere"
        batch.commit(ctx)
        assert list(diff_dirs(s_fd, l_fd)) == []
    finally:
        os.close(s_fd)
        os.close(l_fd)
    assert not [p for p in live.rglob("*") if p.name.startswith(treesync.TMP_PREFIX)]
    got, want = _state(live), _state(saved)
    if () in paths:  # the whole tree: every entry and every directory's times
        assert got == want
    else:
        assert got["a/b/f"] == want["a/b/f"] and got["g"] == want["g"]
        assert got["a"] == want["a"]  # parents keep their times through the renames
        assert os.stat(live).st_mtime_ns == 4_000_000_000
    assert os.stat(live / "g").st_ino == os.stat(live / "a" / "g2").st_ino


def test_batch_renames_only_after_a_sync_and_syncs_after(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    saved, live = _changed_live(tmp_path)
    events: list[str] = []
    real_syncfs, real_rename, real_fsync = treesync.fileops.syncfs, os.rename, os.fsync

    def syncfs(fd: int) -> None:
        events.append("syncfs")
        real_syncfs(fd)

    def rename(*a: object, **k: object) -> None:
        events.append("rename")
        real_rename(*a, **k)  # type: ignore[arg-type]

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(treesync.fileops, "syncfs", syncfs)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "fsync", fsync)
    s_fd = os.open(saved, os.O_RDONLY | os.O_DIRECTORY)
    l_fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        batch = treesync.Batch(l_fd)
        ctx = treesync.SyncContext(op="0" * 16, live_root_fd=l_fd, same_inodes=False,
                                   batch=batch)
        treesync.restore_paths(ctx, s_fd, l_fd, [("a", "b", "f"), ("g",), ("s",)])
        assert events == []  # staged only
        batch.commit(ctx)
    finally:
        os.close(s_fd)
        os.close(l_fd)
    first, last = events.index("rename"), len(events) - 1 - events[::-1].index("rename")
    assert "syncfs" in events[:first]  # the temps were durable before any rename
    assert events[last + 1:] and set(events[last + 1:]) <= {"fsync", "syncfs"}
    assert (live / "a" / "b" / "f").read_bytes() == b"one"


def test_a_failed_batch_leaves_no_temps(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    saved, live = _changed_live(tmp_path)
    real_rename = os.rename
    calls = 0

    def rename(*a: object, **k: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(5, "injected")
        real_rename(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename)
    s_fd = os.open(saved, os.O_RDONLY | os.O_DIRECTORY)
    l_fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        batch = treesync.Batch(l_fd)
        ctx = treesync.SyncContext(op="0" * 16, live_root_fd=l_fd, same_inodes=False,
                                   batch=batch)
        treesync.restore_paths(ctx, s_fd, l_fd, [("a", "b", "f"), ("g",), ("s",)])
        with pytest.raises(OSError, match="injected"):
            batch.commit(ctx)
        batch.discard(os.fstat(l_fd).st_dev)
    finally:
        os.close(s_fd)
        os.close(l_fd)
    assert not [p for p in live.rglob("*") if p.name.startswith(treesync.TMP_PREFIX)]


def test_a_batch_that_fills_up_commits_on_the_way(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    saved, live = _changed_live(tmp_path)
    for i in range(12):  # more changed entries than one batch may hold
        (saved / "a" / f"n{i}").write_bytes(b"saved %d" % i)
        (live / "a" / f"n{i}").write_bytes(b"live")
    for root in (saved, live):
        os.utime(root / "a", ns=(3_000_000_000, 4_000_000_000))
    monkeypatch.setattr(treesync.Batch, "MAX_STEPS", 3)
    commits = 0
    real_commit = treesync.Batch.commit

    def commit(self: treesync.Batch, ctx: treesync.SyncContext) -> None:
        nonlocal commits
        commits += 1
        real_commit(self, ctx)

    monkeypatch.setattr(treesync.Batch, "commit", commit)
    s_fd = os.open(saved, os.O_RDONLY | os.O_DIRECTORY)
    l_fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        batch = treesync.Batch(l_fd)
        ctx = treesync.SyncContext(op="0" * 16, live_root_fd=l_fd, same_inodes=False,
                                   batch=batch)
        treesync.restore_paths(ctx, s_fd, l_fd, [(), ("a", "g2"), ("a", "n3")])
        batch.commit(ctx)
        assert list(diff_dirs(s_fd, l_fd)) == []
    finally:
        os.close(s_fd)
        os.close(l_fd)
    assert commits > 2
    assert _state(live) == _state(saved)
    assert os.stat(live / "g").st_ino == os.stat(live / "a" / "g2").st_ino
    assert not [p for p in live.rglob("*") if p.name.startswith(treesync.TMP_PREFIX)]
