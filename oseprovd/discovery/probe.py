"""Small probes shared by the containers and databases collectors: which processes run,
whether a socket exists, and a program's version from a quick, bounded `--version` call.

Programs are executed only when the target is the live system (never binaries from a
sandbox or a mounted image), with an argv list, no shell, a clean environment, stdin
closed and a short timeout.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

from oseprovd.discovery.fsread import TargetReader, listdir, read_attr
from oseprovd.discovery.roots import SystemRoots

VERSION_TIMEOUT = 3.0
_VERSION_RE = re.compile(r"\d+(?:\.\d+)+(?:[-+~][0-9A-Za-z.+~-]+)?|\d+")
_CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"}


def process_names(proc: Path) -> dict[str, list[int]]:
    """comm -> pids of every process we can see."""
    names: dict[str, list[int]] = {}
    for entry in listdir(proc):
        if entry.isdigit():
            comm = read_attr(proc / entry / "comm")
            if comm:
                names.setdefault(comm, []).append(int(entry))
    return names


def run_path(roots: SystemRoots, path: str) -> Path:
    """'/run/x' lives under the run root; anything else under the target root."""
    if path.startswith("/run/"):
        return roots.run / path.removeprefix("/run/")
    return roots.target / path.lstrip("/")


def is_socket(roots: SystemRoots, path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(run_path(roots, path)).st_mode)
    except OSError:
        return False


def first_present(target: TargetReader, candidates: tuple[str, ...]) -> str | None:
    """The first candidate path that is an executable regular file in the target."""
    for rel in candidates:
        try:
            resolved = target.resolve(rel.lstrip("/"))
        except OSError:
            continue
        if resolved is None:
            continue
        try:
            st = os.stat(resolved)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return "/" + rel.lstrip("/")
    return None


def parse_version(text: str) -> str | None:
    match = _VERSION_RE.search(text)
    return match.group(0) if match else None


def run_output(roots: SystemRoots, argv: list[str], timeout: float = VERSION_TIMEOUT
               ) -> str | None:
    """stdout of a quick read-only command on the live system; None elsewhere or on error."""
    if not roots.is_live:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=_CLEAN_ENV, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


# (real path, device, inode, size, mtime, ctime, args) -> version. Starting a runtime to
# ask its version is the slowest part of a scan (a JVM takes ~100 ms); the answer can
# only change when the file does, and replacing or upgrading it changes these keys.
_VERSIONS: dict[tuple[object, ...], str] = {}
_VERSIONS_MAX = 128


def program_version(roots: SystemRoots, path: str, args: tuple[str, ...] = ("--version",)
                    ) -> str | None:
    """Version printed by `path args...` on the live system; None elsewhere or on failure.
    Remembered while the executable file is unchanged."""
    if not roots.is_live:
        return None
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    key = (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, args)
    if key in _VERSIONS:
        return _VERSIONS[key]
    version = _ask_version(path, args)
    if version is not None:  # a failure (a timeout under load) is asked again next time
        if len(_VERSIONS) >= _VERSIONS_MAX:
            _VERSIONS.clear()
        _VERSIONS[key] = version
    return version


def _ask_version(path: str, args: tuple[str, ...]) -> str | None:
    try:
        done = subprocess.run([path, *args], capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT, env=_CLEAN_ENV, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (done.stdout or done.stderr).strip()
    return parse_version(out.splitlines()[0]) if out else None
