"""Packages of other managers: rpm, flatpak, snap, each only when present in the target.

These databases have no stable file format to parse (rpm's is sqlite or Berkeley DB,
flatpak's an OSTree repository, snap's lives in snapd), so the managers' own tools are
asked, read-only, with a clean environment, stdin closed and each its own timeout; one
failing or hanging is reported under its name and the others still count:
- rpm: the host's `rpm -qa` pointed at the target's database (`--dbpath`, resolved inside
  the target), so no program from the target runs;
- flatpak: the host's `flatpak list --system` with FLATPAK_SYSTEM_DIR at the target's
  installation, only when it already exists (listing a missing one would create it);
- snap: `snap list`, only on the live system with snapd's socket present (snapd answers
  for the host, and can't be pointed at an image).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Literal

from pydantic import BaseModel

from oseprovd.discovery import probe
from oseprovd.discovery.fsread import TargetReader
from oseprovd.discovery.roots import SystemRoots

State = Literal["read", "absent", "error"]
RPM_TIMEOUT = 12.0
FLATPAK_TIMEOUT = 8.0
SNAP_TIMEOUT = 5.0
_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# rpm's database, newest layout first (Fedora 36+ moved it under /usr).
RPM_DB_DIRS = ("usr/lib/sysimage/rpm", "var/lib/rpm")
RPM_DB_FILES = ("rpmdb.sqlite", "Packages", "Packages.db")
RPM_FORMAT = "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{INSTALLTIME}\\n"
FLATPAK_DIR = "var/lib/flatpak"
FLATPAK_COLUMNS = "ref,version,origin"
SNAPD_SOCKET = "/run/snapd.socket"


class RpmPackage(BaseModel):
    name: str
    epoch: int | None = None
    version: str
    release: str
    architecture: str | None = None  # None for gpg-pubkey entries
    install_time: int | None = None  # seconds since the epoch


class Flatpak(BaseModel):
    kind: str  # app, runtime
    id: str
    architecture: str
    branch: str
    version: str | None = None
    origin: str | None = None


class Snap(BaseModel):
    name: str
    version: str
    revision: str
    tracking: str | None = None
    publisher: str | None = None
    notes: list[str] = []


class ManagerState(BaseModel):
    state: State = "absent"
    error: str | None = None


class OtherPackages(BaseModel):
    rpm: ManagerState = ManagerState()
    rpm_packages: list[RpmPackage] = []
    flatpak: ManagerState = ManagerState()
    flatpaks: list[Flatpak] = []
    snap: ManagerState = ManagerState()
    snaps: list[Snap] = []


class ToolFailed(Exception):
    pass


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    tool = shutil.which(argv[0], path=_PATH)
    if tool is None:
        raise ToolFailed(f"{argv[0]} is not installed on this host")
    try:
        done = subprocess.run([tool, *argv[1:]], capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL,
                              env={"PATH": _PATH, "LANG": "C", "LC_ALL": "C",
                                   "HOME": "/nonexistent", **(env or {})})
    except subprocess.TimeoutExpired:
        raise ToolFailed(f"{argv[0]} gave no answer within {timeout:g}s") from None
    except OSError as exc:
        raise ToolFailed(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        raise ToolFailed(f"{argv[0]} exited with {done.returncode}: "
                         f"{done.stderr.strip()[:300]}")
    return done.stdout


def parse_rpm(text: str) -> list[RpmPackage]:
    packages = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 6:
            continue
        name, epoch, version, release, arch, installed = fields
        packages.append(RpmPackage(
            name=name, epoch=int(epoch) if epoch.isdigit() else None, version=version,
            release=release, architecture=None if arch == "(none)" else arch,
            install_time=int(installed) if installed.isdigit() else None))
    return sorted(packages, key=lambda p: (p.name, p.architecture or "", p.version))


def rpm_database(target: TargetReader) -> str | None:
    """Host path of the target's rpm database directory, if it holds a database."""
    for rel in RPM_DB_DIRS:
        if any(target.exists(f"{rel}/{f}") for f in RPM_DB_FILES):
            resolved = target.resolve(rel)
            return str(resolved) if resolved is not None else None
    return None


def rpm_packages(target: TargetReader) -> tuple[ManagerState, list[RpmPackage]]:
    dbpath = rpm_database(target)
    if dbpath is None:
        return ManagerState(), []
    out = _run(["rpm", "--dbpath", dbpath, "-qa", "--qf", RPM_FORMAT], RPM_TIMEOUT)
    return ManagerState(state="read"), parse_rpm(out)


def parse_flatpak(text: str) -> list[Flatpak]:
    found = []
    for line in text.splitlines():
        fields = line.split("\t")
        ref = fields[0].split("/")
        if len(ref) != 4:
            continue
        kind, app_id, arch, branch = ref
        found.append(Flatpak(kind=kind, id=app_id, architecture=arch, branch=branch,
                             version=(fields[1] if len(fields) > 1 else "") or None,
                             origin=(fields[2] if len(fields) > 2 else "") or None))
    return sorted(found, key=lambda f: (f.kind, f.id, f.branch, f.architecture))


def flatpaks(target: TargetReader) -> tuple[ManagerState, list[Flatpak]]:
    if not target.exists(f"{FLATPAK_DIR}/repo"):
        return ManagerState(), []
    installation = target.resolve(FLATPAK_DIR)
    if installation is None:
        return ManagerState(), []
    out = _run(["flatpak", "list", "--system", f"--columns={FLATPAK_COLUMNS}"],
               FLATPAK_TIMEOUT, env={"FLATPAK_SYSTEM_DIR": str(installation)})
    return ManagerState(state="read"), parse_flatpak(out)


def parse_snap_list(text: str) -> list[Snap]:
    """`snap list`: a header line, then Name Version Rev Tracking Publisher Notes."""
    snaps = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 3:
            continue
        notes = fields[5] if len(fields) > 5 else "-"
        snaps.append(Snap(name=fields[0], version=fields[1], revision=fields[2],
                          tracking=fields[3] if len(fields) > 3 and fields[3] != "-" else None,
                          publisher=(fields[4].rstrip("*✓") or None) if len(fields) > 4
                          else None,
                          notes=[] if notes == "-" else notes.split(",")))
    return snaps


def snaps(roots: SystemRoots) -> tuple[ManagerState, list[Snap]]:
    if not roots.is_live or not probe.is_socket(roots, SNAPD_SOCKET):
        return ManagerState(), []
    out = _run(["snap", "list", "--unicode=never", "--color=never"], SNAP_TIMEOUT)
    return ManagerState(state="read"), parse_snap_list(out)


def collect(roots: SystemRoots, target: TargetReader) -> OtherPackages:
    """Each manager alone: its failure is its state, not the collector's."""
    result: dict[str, object] = {}
    for name, attr, ask in (
            ("rpm", "rpm_packages", lambda: rpm_packages(target)),
            ("flatpak", "flatpaks", lambda: flatpaks(target)),
            ("snap", "snaps", lambda: snaps(roots))):
        try:
            state, items = ask()
        except (ToolFailed, OSError) as exc:
            state, items = ManagerState(state="error", error=str(exc)), []
        result[name], result[attr] = state, items
    return OtherPackages.model_validate(result)
