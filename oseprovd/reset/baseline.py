"""The factory baseline: capture it, store it, or fall back to the distribution's.

Captured: installed packages (name, version, arch, manual/auto), every conffile with
the md5sum dpkg knows, users and groups, enabled services (the `*.wants` links).
Without one, "factory" is the distribution's definition: packages of priority
required/important/standard (and Essential ones); every plan then says so.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from oseprovd.discovery.collectors import packages as dpkg_packages
from oseprovd.errors import OseError
from oseprovd.reset import dpkgdb
from oseprovd.reset.models import Account, Baseline, BaselinePackage, EnabledService
from oseprovd.system.rootfs import TargetRoot

DISTRIBUTION_NOTE = ("no baseline was captured: 'factory' means the distribution's "
                     "definition (packages of priority required, important, standard); "
                     "capture one with CaptureBaseline (osectl reset baseline --capture)")
INSTALLER_STATUS = "var/log/installer/status"
INSTALLER_NOTE = ("no baseline was captured: 'factory' means the distribution's "
                  "definition (packages of priority required, important, standard) and "
                  "the packages the installer's log (/var/log/installer/status) lists; "
                  "capture one with CaptureBaseline (osectl reset baseline --capture)")
UNIT_DIRS = ("etc/systemd/system", "etc/systemd/user")
MAX_ACCOUNTS_BYTES = 16 << 20


def _now() -> datetime:
    return datetime.now(UTC)


class BaselineRepository(Protocol):
    def load(self) -> Baseline | None: ...
    def save(self, baseline: Baseline) -> None: ...


class FileBaselineRepository:
    """One JSON file (baseline.json) in a root-owned directory of the state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.state = TargetRoot(state_dir)

    def load(self) -> Baseline | None:
        try:
            data = self.state.read_bytes("baseline.json", 256 << 20)
        except FileNotFoundError:
            return None
        try:
            return Baseline.model_validate_json(data)
        except ValidationError as exc:
            raise OseError(f"{self.state.path}/baseline.json is damaged ({exc.error_count()} "
                           "errors); capture the baseline again") from None

    def save(self, baseline: Baseline) -> None:
        self.state.atomic_write("baseline.json", baseline.model_dump_json().encode(),
                                mode=0o600)


def parse_passwd(text: str) -> list[Account]:
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 7 and f[0] and f[2].isdigit():
            out.append(Account(name=f[0], id=int(f[2]), home=f[5], shell=f[6]))
    return out


def parse_group(text: str) -> list[Account]:
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[0] and f[2].isdigit():
            members = tuple(m for m in f[3].split(",") if m)
            out.append(Account(name=f[0], id=int(f[2]), members=members))
    return out


def read_accounts(root: TargetRoot) -> tuple[list[Account], list[Account]]:
    def text(rel: str) -> str:
        try:
            return root.read_text(rel, MAX_ACCOUNTS_BYTES)
        except FileNotFoundError:
            return ""
    return parse_passwd(text("etc/passwd")), parse_group(text("etc/group"))


def enabled_services(root: TargetRoot) -> list[EnabledService]:
    """Symlinks in `*.wants`/`*.requires` directories: what `systemctl enable` made."""
    out = []
    for top in UNIT_DIRS:
        try:
            fd = root.open_dir(top)
        except (FileNotFoundError, NotADirectoryError, OseError):
            continue
        try:
            for wants in sorted(os.listdir(fd)):
                if not wants.endswith((".wants", ".requires")):
                    continue
                try:
                    sub = os.open(wants, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC, dir_fd=fd)
                except OSError:
                    continue
                try:
                    for unit in sorted(os.listdir(sub)):
                        st = os.stat(unit, dir_fd=sub, follow_symlinks=False)
                        if stat.S_ISLNK(st.st_mode):
                            out.append(EnabledService(wants_dir=f"{top}/{wants}", unit=unit,
                                                      target=os.readlink(unit, dir_fd=sub)))
                finally:
                    os.close(sub)
        finally:
            os.close(fd)
    return out


def _baseline_packages(pkgs: Iterable[dpkg_packages.Package]) -> tuple[BaselinePackage, ...]:
    return tuple(BaselinePackage(name=p.name, version=p.version or "",
                                 architecture=p.architecture or "",
                                 manual=p.auto_installed is not True, priority=p.priority)
                 for p in pkgs)


def capture(root: TargetRoot, clock: Callable[[], datetime] = _now) -> Baseline:
    pkgs = dpkgdb.installed_packages(root)
    users, groups = read_accounts(root)
    return Baseline(
        source="captured", captured=clock(),
        packages=_baseline_packages(pkgs),
        conffiles=tuple(dpkgdb.parse_conffiles(dpkgdb.read_status(root))),
        users=tuple(users), groups=tuple(groups),
        services=tuple(enabled_services(root)),
    )


def installer_packages(root: TargetRoot) -> frozenset[str] | None:
    """The packages debian-installer had installed when it finished (its copy of dpkg's
    status in /var/log/installer/status), or None without that log."""
    try:
        data = root.read_bytes(INSTALLER_STATUS, dpkg_packages.MAX_STATUS_BYTES)
    except (OSError, OseError):
        return None
    names = set()
    for para in dpkg_packages.parse_control(data, frozenset({"Package", "Status"})):
        status = para.get("Status", "").split()
        if len(status) == 3 and status[2] == "installed" and "Package" in para:
            names.add(para["Package"])
    return frozenset(names)


def distribution(root: TargetRoot, clock: Callable[[], datetime] = _now) -> Baseline:
    """The fallback: what the distribution calls its base system, as installed now:
    packages of high priority, and those the installer's log says it installed."""
    by_installer = installer_packages(root)
    pkgs = [p for p in dpkgdb.installed_packages(root)
            if dpkgdb.is_high_priority(p) or (by_installer and p.name in by_installer)]
    users, groups = read_accounts(root)
    return Baseline(
        source="distribution", captured=clock(),
        packages=_baseline_packages(pkgs),
        # system accounts only: users (uid >= 1000) are never "factory" without a baseline
        users=tuple(u for u in users if u.id < 1000 or u.id == 65534),
        groups=tuple(g for g in groups if g.id < 1000 or g.id == 65534),
        note=DISTRIBUTION_NOTE if by_installer is None else INSTALLER_NOTE,
    )


def dumps(baseline: Baseline) -> str:
    return json.dumps(baseline.model_dump(mode="json"), sort_keys=True)
