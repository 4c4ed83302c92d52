"""Helpers for discovery tests: real tools (skip locally, fail under CI) and sandbox trees."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.harness.components import require


def require_tool(name: str) -> str:
    """Path of a real tool the test compares against; missing: skip, or fail when CI=true."""
    return require(name, "a discovery test compares its answer with this tool's")


def run_tool(*argv: str, timeout: float = 30, check: bool = True) -> str:
    require_tool(argv[0])
    return subprocess.run(list(argv), check=check, capture_output=True, text=True,
                          timeout=timeout).stdout


def write(base: Path, rel: str, text: str, mode: int = 0o644) -> Path:
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def symlink(base: Path, rel: str, target: str) -> None:
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def dmi_tree(base: Path, fields: dict[str, str]) -> None:
    """A /sys/class/dmi/id directory with the given attributes (newline-terminated)."""
    for name, value in fields.items():
        write(base, f"sys/class/dmi/id/{name}", value + "\n")


T = TypeVar("T")
U = TypeVar("U")


def steady(truth: Callable[[], T], ours: Callable[[], U], attempts: int = 5) -> tuple[T, U]:
    """(truth, ours) read while the truth held still: other tests on this shared machine
    attach loop devices, mount and listen, so a reading taken between two equal truths
    is the one to compare."""
    for _ in range(attempts):
        before = truth()
        got = ours()
        if truth() == before:
            return before, got
    raise AssertionError("the machine kept changing during the test")
