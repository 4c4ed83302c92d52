"""Users created after the baseline, removed by nuclear: `userdel --root` on the target.

The account files and what userdel touches besides are saved in the rollback point
first, so a rollback brings the accounts back exactly.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from oseprovd.errors import InvalidArguments, OseError

# Debian's default NAME_REGEX (adduser.conf), at most 32 characters.
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,30}[$]?$")
ACCOUNT_FILES = ("etc/passwd", "etc/passwd-", "etc/shadow", "etc/shadow-", "etc/group",
                 "etc/group-", "etc/gshadow", "etc/gshadow-", "etc/subuid", "etc/subuid-",
                 "etc/subgid", "etc/subgid-", "etc/.pwd.lock", "var/log/lastlog",
                 "var/log/faillog")
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def check_user(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise InvalidArguments(f"invalid user name {name!r}")
    return name


def user_paths(names: Sequence[str]) -> list[str]:
    """What removing `names` may change (relative to the root)."""
    out = list(ACCOUNT_FILES)
    for n in names:
        out += [f"var/mail/{n}", f"var/spool/mail/{n}", f"var/spool/cron/crontabs/{n}"]
    return out


class AccountTool(Protocol):
    def remove_user(self, root: Path, name: str) -> None: ...


class Userdel:
    """userdel --root (shadow-utils chroots into the target itself)."""

    def __init__(self, userdel: str = "/usr/sbin/userdel") -> None:
        self.userdel = userdel

    def remove_user(self, root: Path, name: str) -> None:
        argv = [self.userdel]
        if Path(root).resolve() != Path("/"):
            argv += ["--root", str(root)]
        argv += ["--", check_user(name)]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, env=_ENV, timeout=120,
                               check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OseError(f"userdel could not run: {exc}") from None
        # 6: the user does not exist (any more): what we wanted
        if r.returncode not in (0, 6):
            raise OseError(f"userdel {name} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
