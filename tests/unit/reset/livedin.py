"""A lived-in target root built in tmp: users with homes and dotfiles, caches, logs,
/var/tmp, /tmp, /opt, /usr/local, a small dpkg database; plus the test's own list of
what the light profile must remove and what must stay (the ground truth is what the
test planted, never what the engine reports).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from oseprovd.reset.baseline import FileBaselineRepository
from oseprovd.reset.engine import ResetEngine
from oseprovd.reset.planstore import PlanStore
from oseprovd.snapshots.copy_backend import CopyBackend
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.journal import FileJournal
from oseprovd.snapshots.models import SnapshotConfig
from oseprovd.snapshots.repository import SqliteSnapshotRepository, ensure_schema
from oseprovd.system.rootfs import TargetRoot

DAY = 86400

STATUS = """Package: base-files
Status: install ok installed
Priority: required
Essential: yes
Architecture: amd64
Version: 12.4
Conffiles:
 /etc/debian_version 5f2a5ecf3e6c8b1a2bbde4c31b9d4a33
 /etc/issue 4b4a5ce9d4f6f08a9d43e2b9a7b2e6b1

Package: apt
Status: install ok installed
Priority: important
Architecture: amd64
Version: 2.6.1
Conffiles:
 /etc/apt/apt.conf.d/01autoremove 8e3d1cbd5ba4e1e2b6d07e9c07c0a3a4
 /etc/cron.daily/apt-compat 1d1f1e5a0b7e1e0cbd95b2b1f6d3a111 obsolete

Package: hello
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 2.10-3

Package: libfoo1
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 1.0

Package: removed-pkg
Status: deinstall ok config-files
Priority: optional
Architecture: amd64
Version: 0.1
Conffiles:
 /etc/removed.conf 00000000000000000000000000000000
"""

EXTENDED = """Package: libfoo1
Architecture: amd64
Auto-Installed: 1

Package: hello
Architecture: amd64
Auto-Installed: 0
"""


@dataclass
class LivedIn:
    root: Path
    light_removes: set[str] = field(default_factory=set)  # files/links/dirs
    keeps: set[str] = field(default_factory=set)


def _write(root: Path, rel: str, data: bytes | str = b"x", uid: int = 0, gid: int = 0,
           mode: int = 0o644, age_days: float = 0) -> str:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(p, mode)
    os.chown(p, uid, gid)
    if age_days:
        t = time.time() - age_days * DAY
        os.utime(p, (t, t))
    return rel


def _mkdir(root: Path, rel: str, uid: int = 0, gid: int = 0, mode: int = 0o755) -> str:
    p = root / rel
    p.mkdir(parents=True, exist_ok=True)
    os.chmod(p, mode)
    os.chown(p, uid, gid)
    return rel


def build(root: Path) -> LivedIn:
    t = LivedIn(root=root)
    rm, keep = t.light_removes, t.keeps
    _write(root, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"
           "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
           "alice:x:1000:1000:Alice:/home/alice:/bin/bash\n"
           "bob:x:1001:1001:Bob:/home/bob:/bin/bash\n"
           "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    _write(root, "etc/group", "root:x:0:\nadm:x:4:alice\nalice:x:1000:\nbob:x:1001:\n")
    keep |= {_write(root, "etc/fstab", "/dev/vda / ext4 defaults 0 1\n"),
             _write(root, "etc/debian_version", "12.4\n"),
             _write(root, "boot/vmlinuz", b"\x7fELF" * 100)}
    keep |= {_write(root, "etc/skel/.bashrc", "# skel bashrc\n"),
             _write(root, "etc/skel/.profile", "# skel profile\n"),
             _write(root, "etc/skel/.config/app.conf", "default=1\n", mode=0o600)}
    os.makedirs(root / "etc/systemd/system/multi-user.target.wants", exist_ok=True)
    os.symlink("/lib/systemd/system/ssh.service",
               root / "etc/systemd/system/multi-user.target.wants/ssh.service")
    _write(root, "var/lib/dpkg/status", STATUS)
    _write(root, "var/lib/apt/extended_states", EXTENDED)
    _write(root, "var/lib/dpkg/info/apt.list",
           "/.\n/var\n/var/cache\n/var/cache/apt\n/var/cache/apt/archives\n"
           "/var/cache/apt/archives/partial\n/usr/bin/apt\n")
    _write(root, "var/lib/dpkg/info/hello.list", "/.\n/opt\n/opt/hello\n/opt/hello/hello.bin\n")
    _write(root, "var/lib/dpkg/info/base-files.list", "/.\n/etc\n/etc/debian_version\n")
    # homes
    for user, uid in (("alice", 1000), ("bob", 1001)):
        home = f"home/{user}"
        _mkdir(root, home, uid, uid, 0o750)
        keep |= {_write(root, f"{home}/.bashrc", f"# {user}\n", uid, uid),
                 _write(root, f"{home}/.profile", "PATH=$PATH\n", uid, uid),
                 _write(root, f"{home}/Documents/notes.txt", f"{user}'s notes\n" * 50,
                        uid, uid)}
        keep.add(_mkdir(root, f"{home}/.cache", uid, uid, 0o700))
        for rel in (f"{home}/.cache/fontconfig/cache-1", f"{home}/.cache/mozilla/a/b/c.db",
                    f"{home}/.cache/thumbnails/normal/abc.png", f"{home}/.cache/pip/http/x/y",
                    f"{home}/.cache/top-level-file"):
            rm.add(_write(root, rel, os.urandom(3000), uid, uid))
        rm |= {f"{home}/.cache/fontconfig", f"{home}/.cache/mozilla",
               f"{home}/.cache/mozilla/a", f"{home}/.cache/mozilla/a/b",
               f"{home}/.cache/thumbnails", f"{home}/.cache/thumbnails/normal",
               f"{home}/.cache/pip/http", f"{home}/.cache/pip/http/x"}
        keep.add(f"{home}/.cache/pip")  # the dev-caches anchor itself stays
        os.chown(root / f"{home}/.cache/pip", uid, uid)
    rm.add(_write(root, "root/.cache/motd.legal-displayed", b""))
    keep.add("root/.cache")
    # apt
    for deb in ("hello_2.10-3_amd64.deb", "libfoo1_1.0_amd64.deb"):
        rm.add(_write(root, f"var/cache/apt/archives/{deb}", os.urandom(20000)))
    keep |= {_write(root, "var/cache/apt/archives/lock", b""),
             _mkdir(root, "var/cache/apt/archives/partial", 0, 0, 0o700)}
    rm |= {_write(root, "var/cache/apt/pkgcache.bin", os.urandom(5000)),
           _write(root, "var/cache/apt/srcpkgcache.bin", os.urandom(5000))}
    # logs
    keep |= {_write(root, "var/log/syslog", "now\n"),
             _write(root, "var/log/apt/history.log", "now\n"),
             _write(root, "var/log/journal/abc/system.journal", os.urandom(4096)),
             _write(root, "var/log/journal/abc/user-1000.journal", os.urandom(4096))}
    rm |= {_write(root, "var/log/syslog.1", "old\n"), _write(root, "var/log/syslog.2.gz", b"gz"),
           _write(root, "var/log/apt/history.log.1.gz", b"gz"),
           _write(root, "var/log/dpkg.log.old", "old")}
    # archived journal files: within light's 64 MiB of newest archives, so they stay
    # (test_journal_budget.py plants more than a budget)
    keep |= {_write(root, "var/log/journal/abc/system@0005f-0001.journal", os.urandom(4096)),
             _write(root, "var/log/journal/abc/user-1000@0005f-0002.journal~",
                    os.urandom(100))}
    # temp
    rm |= {_write(root, "var/tmp/build.o", os.urandom(1000)),
           _write(root, "var/tmp/alice-stuff/a.txt", "a", 1000, 1000),
           _write(root, "var/tmp/alice-stuff/sub/b.txt", "b", 1000, 1000),
           "var/tmp/alice-stuff", "var/tmp/alice-stuff/sub"}
    keep.add(_write(root, "var/tmp/systemd-private-abc-chronyd/tmp/x", "x"))
    keep.add("var/tmp")
    rm.add(_write(root, "tmp/old-download.iso", os.urandom(2000), age_days=30))
    keep.add(_write(root, "tmp/fresh.txt", "new"))
    keep.add(_write(root, "tmp/.X11-unix/X0", "", age_days=60))
    rm.add(_write(root, "var/crash/app.crash", "core", age_days=1))
    # application data: left by light
    keep |= {_write(root, "opt/hello/hello.bin", "bin"), _write(root, "opt/vendor/app/run", "x"),
             _write(root, "usr/local/bin/tool", "#!/bin/sh\n", mode=0o755),
             _write(root, "var/lib/mysql/ibdata1", os.urandom(5000))}
    # the state dir lives inside the root, as /var/lib/ose does
    _mkdir(root, "var/lib/ose", 0, 0, 0o700)
    return t


@dataclass
class Rig:
    root: Path
    tree: LivedIn
    engine: ResetEngine
    snapshots: SnapshotEngine
    snap_journal: FileJournal
    journal: FileJournal
    state: Path


def make_rig(tmp_path: Path, workers: int = 1, build_tree: bool = True,
             root: Path | None = None, **kw: object) -> Rig:
    root = root or tmp_path / "root"
    root.mkdir(exist_ok=True)
    tree = build(root) if build_tree else LivedIn(root=root)
    state = root / "var/lib/ose"
    state.mkdir(parents=True, exist_ok=True)
    return open_rig(tmp_path, root, tree, workers, **kw)


def open_rig(tmp_path: Path, root: Path, tree: LivedIn, workers: int = 1,
             **kw: object) -> Rig:
    """A fresh engine over an existing root and state (as a restarted daemon sees it)."""
    state = root / "var/lib/ose"
    tmp_path.mkdir(parents=True, exist_ok=True)
    snap_dir = tmp_path / "snapstore"
    conn = sqlite3.connect(tmp_path / "snapshots.db", isolation_level=None,
                           check_same_thread=False)
    ensure_schema(conn)
    snap_journal = FileJournal(tmp_path / "snap-journal.jsonl")
    cfg = SnapshotConfig(name="root", backend="copy", path=root, snapshot_dir=snap_dir)
    snapshots = SnapshotEngine({"root": cfg}, SqliteSnapshotRepository(conn),
                               {"copy": CopyBackend()}, snap_journal)
    engine = ResetEngine(TargetRoot(root), PlanStore(state / "reset.db"),
                         FileBaselineRepository(state), snapshots, state_dir=state,
                         workers=workers, **kw)  # type: ignore[arg-type]
    return Rig(root=root, tree=tree, engine=engine, snapshots=snapshots,
               snap_journal=snap_journal, journal=FileJournal(tmp_path / "reset-journal.jsonl"),
               state=state)


def all_paths(root: Path, skip: tuple[str, ...] = ("var/lib/ose",)) -> set[str]:
    """Every entry under root (lstat walk, independent of the engine)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not any(rel == s or rel.startswith(s + "/") for s in skip):
                out.add(rel)
    return out


def warm_atimes(root: Path) -> None:
    """Give every file an atime an hour ahead. Under relatime a read moves the atime
    when it is not newer than mtime and ctime; with this, neither the engine's reads
    (passwd, dpkg's status, skel, the rollback store's copies) nor a restore followed
    by a read can move it, so a manifest taken now is what a later one must see."""
    now = time.time_ns()
    ahead = now + 3600 * 10**9
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                st = os.lstat(p)
                # idempotent (ahead stays ahead); files planted old keep their old
                # atime, or the age rules would see them as read just now
                if st.st_atime_ns <= now and st.st_mtime_ns > now - DAY * 10**9:
                    os.utime(p, ns=(ahead, st.st_mtime_ns), follow_symlinks=False)
