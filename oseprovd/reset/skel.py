"""Copy /etc/skel into a home after a reset emptied (part of) it.

The skel tree is read into memory by the daemon (as root, through pinned fds with
O_NOFOLLOW, bounded), so a skel file only root can read is still copied. The writes
into the home run in a forked child that has dropped to the home owner's uid, gid and
supplementary groups (house rule: writes into a user's home run as that user): what
the user could not create there is reported, not created by root. The child writes
through the home's pinned fd with O_NOFOLLOW/O_EXCL, so a symlink in the home is
never followed. An entry that exists in the home is left as it is (the user kept it
out of the plan). New entries get skel's modes.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from oseprovd.errors import OseError
from oseprovd.reset.baseline import read_accounts
from oseprovd.system.rootfs import TargetRoot

SKEL = "etc/skel"
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 32
MAX_SKEL_BYTES = 64 << 20  # skel is a few KiB; this bounds what the daemon holds
MAX_SKEL_ENTRIES = 10_000
MAX_REPORT = 100  # failures reported per home


@dataclass
class SkelEntry:
    rel: str  # relative to skel and to the home
    kind: str  # "dir" | "file" | "link"
    mode: int
    data: bytes = b""  # a file's bytes or a link's target
    children: list[SkelEntry] = field(default_factory=list)


@dataclass
class SkelResult:
    made: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (rel, reason)


def skel_paths(root: TargetRoot, home: str) -> list[str]:
    """The paths in `home` that copying skel may create (for the rollback point)."""
    try:
        fd = root.open_dir(SKEL)
    except (OSError, OseError):
        return []
    try:
        return [f"{home}/{rel}" for rel in _walk(fd, "", 0)]
    finally:
        os.close(fd)


def _walk(fd: int, prefix: str, depth: int) -> Iterator[str]:
    if depth > MAX_DEPTH:
        return
    for name in sorted(os.listdir(fd)):
        rel = prefix + name
        yield rel
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, _DIR, dir_fd=fd)
            try:
                yield from _walk(sub, rel + "/", depth + 1)
            finally:
                os.close(sub)


def read_skel(root: TargetRoot) -> list[SkelEntry]:
    """skel's tree (dirs, regular files, symlinks; nothing else), read as root."""
    try:
        fd = root.open_dir(SKEL)
    except (OSError, OseError):
        return []
    budget = [MAX_SKEL_BYTES, MAX_SKEL_ENTRIES]
    try:
        return _read(fd, "", 0, budget)
    finally:
        os.close(fd)


def _read(fd: int, prefix: str, depth: int, budget: list[int]) -> list[SkelEntry]:
    out: list[SkelEntry] = []
    if depth > MAX_DEPTH:
        return out
    for name in sorted(os.listdir(fd)):
        budget[1] -= 1
        if budget[1] < 0:
            raise OSError(f"/etc/skel has more than {MAX_SKEL_ENTRIES} entries")
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        mode = stat.S_IMODE(st.st_mode)
        rel = prefix + name
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, _DIR, dir_fd=fd)
            try:
                kids = _read(sub, rel + "/", depth + 1, budget)
            finally:
                os.close(sub)
            out.append(SkelEntry(rel, "dir", mode, children=kids))
        elif stat.S_ISREG(st.st_mode):
            data = _read_file(fd, name, budget)
            out.append(SkelEntry(rel, "file", mode, data))
        elif stat.S_ISLNK(st.st_mode):
            out.append(SkelEntry(rel, "link", mode, os.fsencode(os.readlink(name, dir_fd=fd))))
    return out


def _read_file(fd: int, name: str, budget: list[int]) -> bytes:
    i = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
    try:
        chunks = []
        while chunk := os.read(i, 1 << 20):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise OSError(f"/etc/skel holds more than {MAX_SKEL_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(i)


def copy_skel(root: TargetRoot, home: str) -> SkelResult:
    """Create what skel has and the home lacks, as the home's owner."""
    tree = read_skel(root)
    if not tree:
        return SkelResult()
    dst = root.open_dir(home)  # O_NOFOLLOW walk: a home that is a symlink is refused
    try:
        st = os.fstat(dst)
        groups = _groups(root, st.st_uid, st.st_gid)
        return _as_user(dst, st.st_uid, st.st_gid, groups, tree)
    finally:
        os.close(dst)


def _groups(root: TargetRoot, uid: int, gid: int) -> list[int]:
    """The owner's groups in the target root's account files (primary + member of)."""
    users, groups = read_accounts(root)
    names = {u.name for u in users if u.id == uid}
    return sorted({gid} | {g.id for g in groups if names & set(g.members)})


def _as_user(dst: int, uid: int, gid: int, groups: list[int],
             tree: list[SkelEntry]) -> SkelResult:
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 1
        msg: dict[str, Any]
        try:
            os.close(r)
            # nothing of the daemon's (bus, store, journal) stays open as the user
            keep = sorted((dst, w))
            os.closerange(3, keep[0])
            os.closerange(keep[0] + 1, keep[1])
            os.closerange(keep[1] + 1, os.sysconf("SC_OPEN_MAX"))
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            res = SkelResult()
            _copy(tree, dst, res)
            msg = {"made": res.made, "failed": res.failed}
            code = 0
        except BaseException as exc:  # everything goes to the parent, as text
            msg = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            data = json.dumps(msg).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(code)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    try:
        reply: dict[str, Any] = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        reply = {}
    if "error" in reply:
        raise OSError(f"as uid {uid}: {reply['error']}")
    if os.waitstatus_to_exitcode(status) != 0 or "made" not in reply:
        raise OSError(f"the skel copy as uid {uid} ended with status {status}")
    return SkelResult(int(reply["made"]), [(str(a), str(b)) for a, b in reply["failed"]])


def _fail(res: SkelResult, rel: str, exc: OSError) -> None:
    if len(res.failed) < MAX_REPORT:
        res.failed.append((rel, exc.strerror or str(exc)))


def _copy(entries: list[SkelEntry], dst: int, res: SkelResult) -> None:
    """Runs as the user; an entry that fails is reported and the rest goes on."""
    for e in entries:
        name = e.rel.rsplit("/", 1)[-1]
        try:
            exists = True
            try:
                os.stat(name, dir_fd=dst, follow_symlinks=False)
            except FileNotFoundError:
                exists = False
            if e.kind == "dir":
                if not exists:
                    os.mkdir(name, 0o700, dir_fd=dst)
                    res.made += 1
                try:
                    d = os.open(name, _DIR, dir_fd=dst)
                except OSError:
                    if exists:
                        continue  # a symlink or a file the user has there: theirs
                    raise
                try:
                    if not exists:
                        os.fchmod(d, e.mode)
                    _copy(e.children, d, res)
                finally:
                    os.close(d)
            elif exists:
                continue
            elif e.kind == "file":
                _write_file(dst, name, e)
                res.made += 1
            elif e.kind == "link":
                os.symlink(os.fsdecode(e.data), name, dir_fd=dst)
                res.made += 1
        except OSError as exc:
            _fail(res, e.rel, exc)
    try:
        os.fsync(dst)
    except OSError as exc:
        _fail(res, ".", exc)


def _write_file(dst: int, name: str, e: SkelEntry) -> None:
    o = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                | os.O_CLOEXEC, 0o600, dir_fd=dst)
    try:
        view = memoryview(e.data)
        while view:
            view = view[os.write(o, view):]
        os.fchmod(o, e.mode)
        os.fsync(o)
    finally:
        os.close(o)
