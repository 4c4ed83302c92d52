"""Package removal on the target: apt-get run chrooted into it, argv lists only.

Preview asks apt for a simulation (`-s`) so the plan lists exactly what apt would
remove (dependents and now-unneeded dependencies included); Execute simulates again,
refuses if the answer changed, then runs the same command for real. Names are checked
against Debian's package-name pattern before they reach any argv, after `--`.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from oseprovd.errors import InvalidArguments, OseError
from oseprovd.reset.dpkgdb import ARCH_NAME, PACKAGE_NAME

APT_TIMEOUT = 3600
# a .deb under the root: no "..", no leading "-", a plain file name ending in .deb
_DEB_PATH = re.compile(r"^(?:[A-Za-z0-9_+.%~-]+/)*[A-Za-z0-9+][A-Za-z0-9_+.%~-]*\.deb$")
_REMV = re.compile(r"^(Remv|Purg) (\S+) \[([^\]]+)\]")
# apt's binary caches would be rebuilt into var/cache/apt outside the rollback point
_APT_OPTS = ("-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
             "-o", "APT::Get::Show-Versions=false", "-o", "Dpkg::Use-Pty=0")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C",
        "DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}


def check_package(name: str) -> str:
    base, _, arch = name.partition(":")
    if not PACKAGE_NAME.fullmatch(base) or (arch and not ARCH_NAME.fullmatch(arch)):
        raise InvalidArguments(f"invalid package name {name!r}")
    return name


class PackageTool(Protocol):
    def simulate_remove(self, root: Path, names: Sequence[str],
                        purge: bool) -> list[tuple[str, str, str]]:
        """(name, arch, version) of every package apt would remove."""

    def remove(self, root: Path, names: Sequence[str], purge: bool) -> None: ...

    def install_debs(self, root: Path, debs: Sequence[str]) -> None:
        """Install local .debs (paths relative to the root) into the target."""


class AptChroot:
    """apt-get inside the target root (chroot; for "/" it is the machine itself)."""

    def __init__(self, chroot: str = "/usr/sbin/chroot",
                 apt_get: str = "/usr/bin/apt-get", dpkg: str = "/usr/bin/dpkg") -> None:
        self.chroot = chroot
        self.apt_get = apt_get
        self.dpkg = dpkg

    def _argv(self, root: Path, names: Sequence[str], purge: bool,
              simulate: bool) -> list[str]:
        if not names:
            raise InvalidArguments("no packages to remove")
        for n in names:
            check_package(n)
        argv = [self.apt_get, *_APT_OPTS, "-y", "--autoremove"]
        if simulate:
            # a simulation must leave no trace: no planner log (eipp.log.xz)
            argv += ["-o", "Dir::Log::Planner=/dev/null", "-s"]
        if purge:
            argv.append("--purge")
        argv += ["remove", "--", *names]
        if Path(root).resolve() != Path("/"):
            argv = [self.chroot, "--", str(root), *argv]
        return argv

    def _run(self, argv: list[str], what: str = "apt-get") -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, env=_ENV,
                               timeout=APT_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OseError(f"{what} could not run: {exc}") from None
        if r.returncode != 0:
            raise OseError(f"{what} failed ({r.returncode}): {r.stderr.strip()[-800:]}")
        return r.stdout

    def simulate_remove(self, root: Path, names: Sequence[str],
                        purge: bool) -> list[tuple[str, str, str]]:
        out = self._run(self._argv(root, names, purge, simulate=True))
        found = []
        for line in out.splitlines():
            m = _REMV.match(line)
            if m:
                name, _, arch = m.group(2).partition(":")
                found.append((name, arch, m.group(3)))
        return sorted(found)

    def remove(self, root: Path, names: Sequence[str], purge: bool) -> None:
        self._run(self._argv(root, names, purge, simulate=False))

    def install_debs(self, root: Path, debs: Sequence[str]) -> None:
        """`dpkg -i` of the given .debs in the target, all in one call so that
        baseline packages depending on each other configure together."""
        if not debs:
            raise InvalidArguments("no .debs to install")
        for d in debs:
            if not _DEB_PATH.fullmatch(d) or {".", ".."} & set(d.split("/")):
                raise InvalidArguments(f"invalid .deb path {d!r}")
        argv = [self.dpkg, "--force-confdef", "--force-confold", "-i", "--",
                *(f"/{d}" for d in debs)]
        if Path(root).resolve() != Path("/"):
            argv = [self.chroot, "--", str(root), *argv]
        self._run(argv, "dpkg")


# What apt and dpkg change besides the packages' own files: saved so that a restore
# also removes what they created (locks, logs, state files).
STATE_PATHS = ("var/lib/dpkg", "var/log/apt", "var/cache/debconf", "etc/alternatives",
               "var/lib/apt/extended_states", "var/lib/apt/lists/lock",
               "var/lib/apt/lists/auxfiles", "var/lib/apt/lists/partial",
               "var/cache/apt/archives/lock", "var/cache/apt/archives/partial",
               "var/log/dpkg.log", "var/log/alternatives.log")


def package_paths(root_path: Path, names: Sequence[str], purge: bool) -> list[str]:
    """The files removing `names` deletes, relative to the root, for the rollback
    point: every non-directory path the packages list (directories are only removed
    when empty, and their metadata is saved as the files' parents), and with purge
    /var/lib/<pkg> and /etc/<pkg>."""
    from oseprovd.reset.dpkgdb import INFO_DIR
    from oseprovd.system.rootfs import TargetRoot

    root = TargetRoot(root_path)
    out: set[str] = set()
    for name in names:
        base = name.split(":")[0]
        for list_name in (f"{base}.list", f"{name}.list"):
            try:
                data = root.read_bytes(f"{INFO_DIR}/{list_name}", 64 << 20)
            except (FileNotFoundError, OseError, OSError):
                continue
            for raw in data.split(b"\n"):
                rel = os.fsdecode(raw).strip("/")
                if not rel or rel == ".":
                    continue
                try:
                    st = root.lstat(rel)
                except OseError:
                    continue  # a symlinked directory on the way (merged /usr): not ours
                if st is not None and not _isdir(st.st_mode):
                    out.add(rel)
        if purge:
            for extra in (f"var/lib/{base}", f"etc/{base}"):
                if root.lstat(extra) is not None:
                    out.add(extra)
    return sorted(out)


def _isdir(mode: int) -> bool:
    import stat
    return stat.S_ISDIR(mode)
