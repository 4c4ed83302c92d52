"""Test accounts and running code as them.

Accounts (system accounts, no home, nologin shell), created idempotently:
  group osetest-admin   granted every org.ose.* polkit action by the harness's rules
  user  oseadmin        member of osetest-admin
  user  oseuser         no grant at all

`run_as` runs a command as a user; `call_as` forks, drops to the user and runs a Python
function there (a D-Bus client, typically), returning its result or exception.
"""

from __future__ import annotations

import asyncio
import grp
import inspect
import os
import pickle
import pwd
import select
import shutil
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.components import REPO_ROOT, require, require_root

ADMIN_GROUP = "osetest-admin"
ADMIN_USER = "oseadmin"
PLAIN_USER = "oseuser"
NOLOGIN = "/usr/sbin/nologin"


@dataclass(frozen=True)
class TestUser:
    __test__ = False  # not a pytest test class

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary group ids, from /etc/group

    @classmethod
    def lookup(cls, name: str) -> TestUser:
        pw = pwd.getpwnam(name)
        return cls(name, pw.pw_uid, pw.pw_gid, tuple(os.getgrouplist(name, pw.pw_gid)))


@dataclass(frozen=True)
class TestUsers:
    __test__ = False

    admin: TestUser  # oseadmin, in osetest-admin
    user: TestUser  # oseuser, no grant
    admin_group: str = ADMIN_GROUP
    admin_gid: int = -1


def _run_locked(argv: list[str]) -> None:
    """useradd & co. fail when another process holds /etc/passwd's lock: retry briefly."""
    for attempt in range(20):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        if "lock" not in done.stderr or attempt == 19:
            raise RuntimeError(f"{argv} failed ({done.returncode}): {done.stderr.strip()}")
        time.sleep(0.1)  # waiting for another process's lock, not for readiness


def _exists(db: Callable[[str], Any], name: str) -> bool:
    try:
        db(name)
    except KeyError:
        return False
    return True


def ensure_test_users() -> TestUsers:
    """Create the group and the two users if missing; fix oseadmin's membership."""
    require_root("creating test accounts")
    groupadd = require("groupadd", "creating the test group")
    useradd = require("useradd", "creating the test users")
    if not _exists(grp.getgrnam, ADMIN_GROUP):
        _run_locked([groupadd, "--system", "--", ADMIN_GROUP])
    for name, extra in ((ADMIN_USER, [ADMIN_GROUP]), (PLAIN_USER, [])):
        if not _exists(pwd.getpwnam, name):
            argv = [useradd, "--system", "--user-group", "--no-create-home",
                    "--home-dir", "/nonexistent", "--shell", NOLOGIN]
            if extra:
                argv += ["--groups", ",".join(extra)]
            _run_locked([*argv, "--", name])
    if ADMIN_USER not in grp.getgrnam(ADMIN_GROUP).gr_mem:
        _run_locked([require("usermod", "fixing group membership"), "--append",
                     "--groups", ADMIN_GROUP, "--", ADMIN_USER])
    users = TestUsers(
        admin=TestUser.lookup(ADMIN_USER),
        user=TestUser.lookup(PLAIN_USER),
        admin_gid=grp.getgrnam(ADMIN_GROUP).gr_gid,
    )
    assert users.admin_gid in users.admin.groups
    assert users.admin_gid not in users.user.groups
    return users


def _user(user: TestUser | str) -> TestUser:
    return user if isinstance(user, TestUser) else TestUser.lookup(user)


def _drop_to(user: TestUser) -> None:
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)
    if os.getuid() != user.uid or os.geteuid() != user.uid:
        raise RuntimeError("privileges were not dropped")


class RemoteError(Exception):
    """An exception from `call_as` that could not be pickled, as its repr and traceback."""


def _run_in_child(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Run fn (awaiting it if async) in a fresh thread: the forked parent may have been
    inside a running event loop, and asyncio.run refuses to nest in one."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            result = fn(*args)
            if inspect.isawaitable(result):
                async def wrap() -> Any:
                    return await result
                result = asyncio.run(wrap())
            box["ok"] = result
        except BaseException as e:
            box["err"] = e
            box["tb"] = traceback.format_exc()

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "err" in box:
        raise box["err"]
    return box["ok"]


def _fork_as(user: TestUser, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[int, int]:
    """Fork a child that drops to `user`, runs fn and writes a pickled outcome to a pipe."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's stack
        code = 0
        try:
            os.close(rfd)
            try:
                _drop_to(user)
                outcome: tuple[str, Any] = ("ok", _run_in_child(fn, args))
            except BaseException as e:
                outcome = ("err", e)
            try:
                data = pickle.dumps(outcome)
            except Exception:
                err = outcome[1]
                desc = repr(err) if outcome[0] == "err" else f"unpicklable result {err!r}"
                data = pickle.dumps(("err", RemoteError(desc)))
            with os.fdopen(wfd, "wb") as out:
                out.write(data)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    return pid, rfd


def _collect(pid: int, rfd: int, user: TestUser, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    chunks = []
    with os.fdopen(rfd, "rb", buffering=0) as f:
        while True:
            ready, _, _ = select.select([f], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TimeoutError(f"call_as({user.name}) gave no result within {timeout} s")
            chunk = f.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if not data:
        raise RuntimeError(f"call_as({user.name}) child died (wait status {status})")
    kind, value = pickle.loads(data)
    if kind == "err":
        raise value
    return value


def call_as(
    user: TestUser | str, fn: Callable[..., Any], *args: Any, timeout: float = 60.0
) -> Any:
    """Run fn(*args) in a forked child as `user` and return its (picklable) result.

    fn may be a coroutine function: it then runs under asyncio.run in the child. Its
    exception is re-raised here (D-Bus errors from tests.harness.busclient pickle). The
    child needs no file access beyond what was already imported, so this works even when
    the checkout is unreadable to the user. Blocks; from async code use `acall_as`.
    A child that gives no result within `timeout` s is killed: TimeoutError.
    """
    u = _user(user)
    pid, rfd = _fork_as(u, fn, args)
    return _collect(pid, rfd, u, timeout)


async def acall_as(
    user: TestUser | str, fn: Callable[..., Any], *args: Any, timeout: float = 60.0
) -> Any:
    """`call_as` for async tests: the event loop keeps running (e.g. to serve the call)."""
    u = _user(user)
    pid, rfd = _fork_as(u, fn, args)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _collect, pid, rfd, u, timeout)


def first_inaccessible(user: TestUser | str, path: Path | str, mode: int = os.X_OK) -> str | None:
    """The first component of `path` that `user` cannot traverse (or, for the last one,
    access with `mode`), or None if all is well. Checked as the user, so ACLs count."""

    def check(p: str, m: int) -> str | None:
        # abspath, not resolve: a symlink (the venv's python) must be reachable too.
        parts = Path(os.path.abspath(p)).parts
        for i in range(1, len(parts) + 1):
            sub = os.path.join(*parts[:i])
            if not os.access(sub, m if i == len(parts) else os.X_OK):
                return sub
        return None

    result: str | None = call_as(user, check, str(path), mode)
    return result


class InaccessiblePath(PermissionError):
    pass


def run_as(
    user: TestUser | str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 60.0,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv as `user` (uid, gid and supplementary groups switched), capturing text.

    cwd defaults to the repo root, which must be traversable by the user (a checkout
    under /root is not): that is checked first, with a message naming the path at fault.
    env is added to a minimal environment (PATH, LANG, HOME, USER, PYTHONPATH=repo).
    """
    u = _user(user)
    exe = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if exe is None:
        raise FileNotFoundError(f"run_as: {argv[0]} not on PATH")
    workdir = Path(cwd) if cwd is not None else REPO_ROOT
    for what, path, mode in (
        ("the executable", exe, os.X_OK),
        ("the working directory", workdir, os.X_OK),
        ("the repository", REPO_ROOT, os.R_OK | os.X_OK),
    ):
        bad = first_inaccessible(u, path, mode)
        if bad is not None:
            raise InaccessiblePath(
                f"run_as({u.name}): {what} {path} is not reachable by uid {u.uid}: "
                f"no access to {bad}. Put the checkout (and its venv) where every user "
                "can traverse (o+x on each parent directory), e.g. under /srv or /opt."
            )
    full_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "HOME": "/nonexistent",
        "USER": u.name,
        "LOGNAME": u.name,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    full_env.update(env or {})
    return subprocess.run(
        list(argv),
        user=u.uid,
        group=u.gid,
        extra_groups=list(u.groups),
        env=full_env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )
