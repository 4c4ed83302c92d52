"""The tuning journal: what the engine is about to change is on disk (fsynced) before it
changes it.

The engine needs four operations: append a step, read all steps back, atomically replace
the whole journal with a compacted form, and its size (to know when to compact).
FileJournal keeps JSON lines in one file.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

MAX_JOURNAL = 16 << 20

Entry = tuple[str, dict[str, Any]]


class Journal(Protocol):
    def record(self, step: str, data: dict[str, Any]) -> None:
        """Append one step durably: it must be on disk when this returns."""

    def entries(self) -> list[Entry]:
        """Every recorded step, oldest first. The dicts may be shared with the journal's
        own cache: read them, do not change them."""

    def replace(self, entries: list[Entry]) -> None:
        """Atomically replace the journal's content (compaction)."""

    def size(self) -> int:
        """How many bytes the journal holds now."""


class FileJournal:
    """JSON lines in one file; appends are fsynced, replacement is rename-atomic.

    A torn last line (the process died inside a write) is ignored when reading: its step
    had not been acted on, because acting only starts after record() returns. Only lines
    that end in a newline count (a write that stopped just before it did not return), and
    the next append cuts such a tail off first, so no later step is glued onto it.

    The parsed entries are kept while the file is unchanged (same inode, size and mtime),
    and an append extends them: the engine reads its state several times per operation,
    and the file is only re-read when something else changed it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._key: tuple[int, int, int] | None = None
        self._entries: list[Entry] = []
        self._good = 0  # bytes of whole, parsed lines; anything after them is torn

    @staticmethod
    def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _parse(self, data: bytes) -> None:
        out: list[Entry] = []
        good = 0
        while good < len(data):
            end = data.find(b"\n", good)
            if end < 0:
                break  # no newline: torn
            raw = data[good:end]
            if raw.strip():
                try:
                    item = json.loads(raw)
                    entry = (str(item["step"]), dict(item["data"]))
                except (ValueError, KeyError, TypeError):
                    break  # torn tail
                out.append(entry)
            good = end + 1
        self._entries, self._good = out, good

    def _load_fd(self, fd: int, st: os.stat_result) -> None:
        if st.st_size > MAX_JOURNAL:
            raise ValueError(f"{self.path}: journal larger than {MAX_JOURNAL} bytes")
        chunks = []
        offset = 0
        while chunk := os.pread(fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
            if offset > MAX_JOURNAL:
                raise ValueError(f"{self.path}: journal larger than {MAX_JOURNAL} bytes")
        self._parse(b"".join(chunks))
        self._key = self._stat_key(st)

    def _forget(self) -> None:
        self._key, self._entries, self._good = None, [], 0

    def entries(self) -> list[Entry]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._forget()
            return []
        if self._key != self._stat_key(st):
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                self._forget()
                return []
            try:
                self._load_fd(fd, os.fstat(fd))
            finally:
                os.close(fd)
        return list(self._entries)

    def record(self, step: str, data: dict[str, Any]) -> None:
        line = (json.dumps({"step": step, "data": data}, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            st = os.fstat(fd)
            if self._key != self._stat_key(st):
                self._load_fd(fd, st)
            if self._good != st.st_size:
                os.ftruncate(fd, self._good)  # a torn tail from a process that died
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            if st.st_size == 0:
                self._sync_dir()  # the file may be new: its name must be on disk too
            self._entries.append((step, json.loads(line)["data"]))
            self._good += len(line)
            self._key = self._stat_key(os.fstat(fd))
        except BaseException:
            self._forget()  # whatever happened, read the file again next time
            raise
        finally:
            os.close(fd)

    def replace(self, entries: list[Entry]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        text = "".join(
            json.dumps({"step": s, "data": d}, sort_keys=True) + "\n" for s, d in entries
        )
        self._forget()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._sync_dir()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()

    def _sync_dir(self) -> None:
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0
