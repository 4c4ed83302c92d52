"""Logs of the real components that are running, attached to the report of a failed test.

Each harness process registers its log file while it runs. tests/conftest.py records
where every log ends when a test starts and, if the test fails, appends to the report
what each log gained since (a log that started during the test is shown whole).
"""

from __future__ import annotations

from pathlib import Path

MAX_CHARS = 20_000
_active: dict[Path, str] = {}


def register(title: str, path: Path) -> None:
    _active[path] = title


def unregister(path: Path) -> None:
    _active.pop(path, None)


def marks() -> dict[Path, int]:
    """Current size of every active log."""
    out = {}
    for path in _active:
        try:
            out[path] = path.stat().st_size
        except OSError:
            out[path] = 0
    return out


def since(start: dict[Path, int]) -> list[tuple[str, str]]:
    """(title, text) of what each active log gained since `start`; empty logs left out."""
    sections = []
    for path, title in list(_active.items()):
        try:
            with path.open("rb") as f:
                f.seek(start.get(path, 0))
                text = f.read().decode(errors="replace")
        except OSError as e:
            text = f"(log unreadable: {e})\n"
        if not text:
            continue
        if len(text) > MAX_CHARS:
            text = f"(... {len(text) - MAX_CHARS} chars cut ...)\n" + text[-MAX_CHARS:]
        sections.append((f"log of {title} ({path})", text))
    return sections
