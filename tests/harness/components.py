"""Finding the real components a test needs, and failing loudly in CI when one is missing.

Locally a missing tool is a skip (a developer laptop may lack polkitd); under CI=true it is
a failure, so a CI image that lost a package can't turn the suite silently green.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# tests/harness/components.py -> the checkout's root, wherever it lives.
REPO_ROOT = Path(__file__).resolve().parents[2]

DBUS_DAEMON = "dbus-daemon"
POLKITD = "/usr/lib/polkit-1/polkitd"
UNSHARE = "unshare"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(why: str) -> None:
    """Skip locally, fail under CI=true. Never returns."""
    if in_ci():
        pytest.fail(f"required component missing (CI=true): {why}", pytrace=False)
    pytest.skip(why)


def require(tool_or_path: str, why: str) -> str:
    """Return the absolute path of an executable (a name on PATH or a path), or skip/fail."""
    if os.sep in tool_or_path:
        found = tool_or_path if os.access(tool_or_path, os.X_OK) else None
    else:
        found = shutil.which(tool_or_path)
    if found is None:
        missing(f"{tool_or_path} not found: {why}")
    assert found is not None
    return found


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        missing(f"needs root: {why}")


def repo_file(*parts: str) -> Path:
    """A file of the project (bus policy, polkit policy), which must exist."""
    path = REPO_ROOT.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"project file {path} is missing from the checkout")
    return path
