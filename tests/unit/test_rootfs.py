import os
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oseprovd.errors import InvalidArguments
from oseprovd.system.rootfs import TargetRoot, UnsafePath, split_rel


@pytest.fixture
def root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("box\n")
    return TargetRoot(tmp_path)


def test_reads_inside_the_root(root):
    assert root.read_text("/etc/hostname") == "box\n"
    assert root.lstat("etc/hostname").st_size == 4
    assert root.lstat("etc/missing") is None


@pytest.mark.parametrize("rel", ["../etc/passwd", "etc/../../x", "a/\0b"])
def test_dotdot_and_nul_are_refused(root, rel):
    with pytest.raises(InvalidArguments):
        root.read_bytes(rel)


def test_symlinked_directory_is_not_followed(root, tmp_path):
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(outside, tmp_path / "etc" / "link")
    with pytest.raises(UnsafePath):
        root.read_bytes("etc/link/secret")
    with pytest.raises(UnsafePath):
        root.atomic_write("etc/link/planted", b"x")
    assert not (outside / "planted").exists()


def test_symlinked_leaf_is_not_followed_or_replaced_through(root, tmp_path):
    target = tmp_path / "etc" / "hostname"
    os.symlink(target, tmp_path / "etc" / "alias")
    with pytest.raises(UnsafePath):
        root.read_bytes("etc/alias")
    with pytest.raises(UnsafePath):
        root.write_existing("etc/alias", b"x")
    assert target.read_text() == "box\n"


def test_atomic_write_sets_mode_and_replaces(root, tmp_path):
    root.atomic_write("etc/sysctl.d/90-ose.conf", b"vm.swappiness = 10\n", mode=0o640,
                      create_parents=True)
    p = tmp_path / "etc" / "sysctl.d" / "90-ose.conf"
    assert p.read_bytes() == b"vm.swappiness = 10\n"
    assert p.stat().st_mode & 0o777 == 0o640
    ino = p.stat().st_ino
    root.atomic_write("etc/sysctl.d/90-ose.conf", b"new\n")
    assert p.read_bytes() == b"new\n" and p.stat().st_ino != ino
    assert sorted(os.listdir(p.parent)) == ["90-ose.conf"]  # no temp file left


def test_read_limit_is_an_error_not_a_truncation(root):
    with pytest.raises(InvalidArguments):
        root.read_bytes("etc/hostname", limit=2)


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "c d"]), max_size=8))
def test_split_rel_never_yields_dotdot(parts):
    rel = "/".join(parts)
    try:
        out = split_rel(rel)
    except InvalidArguments:
        assert ".." in parts
    else:
        assert ".." not in out and "" not in out and "." not in out


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_cached_dirs_resolves_each_directory_once_and_closes_them(root, tmp_path):
    (tmp_path / "etc" / "sub").mkdir()
    (tmp_path / "etc" / "sub" / "a").write_text("1\n")
    before = _open_fds()
    with root.cached_dirs():
        assert root.read_text("etc/hostname") == "box\n"
        held = _open_fds() - before
        assert len(held) == 1  # the fd of etc, kept
        root.atomic_write("etc/sub/a", b"2\n")
        root.write_existing("etc/hostname", b"other\n")
        assert root.read_text("etc/sub/a") == "2\n"
        assert root.read_text("etc/hostname") == "other\n"
        fd = root.open_dir("etc")
        assert sorted(os.listdir(fd)) == ["hostname", "sub"]
        assert sorted(os.listdir(fd)) == ["hostname", "sub"]  # a shared offset is rewound
        os.close(fd)
        assert len(_open_fds() - before) == 2  # etc and etc/sub
        # Still no symlinks: a cached walk follows the same rules.
        os.symlink(tmp_path / "etc", tmp_path / "etc" / "sub" / "link")
        with pytest.raises(UnsafePath):
            root.read_bytes("etc/sub/link/hostname")
    assert _open_fds() == before


def test_cached_dirs_is_per_thread(root):
    seen: list[bool] = []

    def other() -> None:
        seen.append(getattr(root._local, "dirs", None) is None
                    and root.read_text("etc/hostname") == "box\n")

    with root.cached_dirs():
        root.read_text("etc/hostname")
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen == [True]


def test_prepare_then_commit_or_discard_a_write(root, tmp_path):
    tmp = root.prepare_write("etc/hostname", b"new\n", mode=0o600)
    assert (tmp_path / "etc" / tmp).read_bytes() == b"new\n"
    assert root.read_text("etc/hostname") == "box\n"  # nothing visible changed yet
    root.commit_write("etc/hostname", tmp)
    assert root.read_text("etc/hostname") == "new\n"
    assert not (tmp_path / "etc" / tmp).exists()
    assert oct((tmp_path / "etc" / "hostname").stat().st_mode & 0o777) == "0o600"
    tmp = root.prepare_write("etc/hostname", b"other\n")
    root.discard_write("etc/hostname", tmp)
    assert sorted(os.listdir(tmp_path / "etc")) == ["hostname"]
    with pytest.raises(InvalidArguments):  # only a temp file of that very file
        root.commit_write("etc/hostname", "../etc/hostname")
