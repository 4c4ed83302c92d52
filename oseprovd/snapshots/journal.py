"""The step journal: every step of a change is recorded (and fsync'd by the journal's
implementation) before it is taken, so a run killed at any point can be finished or
reverted by `SnapshotEngine.recover`.

Entries are `(step, data)`; `data["op"]` ties the steps of one operation together.

A `StepJournal` also takes notes: steps recovery never needs (how far an undo got, for
progress), written but not fsync'd, so they cost no disk flush each; the next `record`
makes them durable along with itself. An operation must be recoverable from its
`record`ed steps alone. (Other engines share `Journal`, which has no notes.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol


class Journal(Protocol):
    def record(self, step: str, data: dict[str, Any]) -> None: ...


class StepJournal(Journal, Protocol):
    def note(self, step: str, data: dict[str, Any]) -> None: ...


JournalEntry = tuple[str, dict[str, Any]]


class FileJournal:
    """JSON lines, one fsync per step: the daemon's default, and what tests read back."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def record(self, step: str, data: dict[str, Any]) -> None:
        self._append(step, data, durable=True)

    def note(self, step: str, data: dict[str, Any]) -> None:
        self._append(step, data, durable=False)

    def _append(self, step: str, data: dict[str, Any], durable: bool) -> None:
        line = json.dumps({"step": step, "data": data}, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                     | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, line.encode())
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> list[JournalEntry]:
        return read_journal(self.path)

    def clear(self) -> None:
        """Empty the journal (only when SnapshotEngine.pending() says nothing is open)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC
                     | os.O_NOFOLLOW, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_journal(path: str | os.PathLike[str]) -> list[JournalEntry]:
    """The complete entries of a journal file; a torn last line (killed mid-write) is
    dropped: its step was never started, since a step runs only after its entry is
    written."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    out: list[JournalEntry] = []
    for line in raw.split(b"\n"):
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("step"), str) and isinstance(
            obj.get("data"), dict
        ):
            out.append((obj["step"], obj["data"]))
    return out


class MemoryJournal:
    """Keeps entries in a list (for callers that persist elsewhere, and for tests)."""

    def __init__(self) -> None:
        self.entries: list[JournalEntry] = []

    def record(self, step: str, data: dict[str, Any]) -> None:
        self.entries.append((step, dict(data)))

    def note(self, step: str, data: dict[str, Any]) -> None:
        self.entries.append((step, dict(data)))
