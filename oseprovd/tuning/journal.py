"""The tuning journal: every step is recorded (and fsynced) before the engine acts on it.

The engine needs three operations: append a step, read all steps back, and atomically
replace the whole journal with a compacted form. FileJournal keeps JSON lines in one file.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

MAX_JOURNAL = 16 << 20


class Journal(Protocol):
    def record(self, step: str, data: dict[str, Any]) -> None:
        """Append one step durably: it must be on disk when this returns."""

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        """Every recorded step, oldest first."""

    def replace(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        """Atomically replace the journal's content (compaction)."""


class FileJournal:
    """JSON lines in one file; appends are fsynced, replacement is rename-atomic.

    A torn last line (the process died inside a write) is ignored when reading: its step
    had not been acted on, because acting only starts after record() returns.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def record(self, step: str, data: dict[str, Any]) -> None:
        line = json.dumps({"step": step, "data": data}, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_JOURNAL + 1)
        except FileNotFoundError:
            return []
        if len(data) > MAX_JOURNAL:
            raise ValueError(f"{self.path}: journal larger than {MAX_JOURNAL} bytes")
        out: list[tuple[str, dict[str, Any]]] = []
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw)
            except ValueError:
                break  # torn tail
            out.append((str(item["step"]), dict(item["data"])))
        return out

    def replace(self, entries: list[tuple[str, dict[str, Any]]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        text = "".join(
            json.dumps({"step": s, "data": d}, sort_keys=True) + "\n" for s, d in entries
        )
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
