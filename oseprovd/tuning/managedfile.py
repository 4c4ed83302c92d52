"""A configuration file that tuning owns whole (limits.d, sysctl.d), written atomically.

The knob's value is the file's whole text. Its original state (absent, or bytes, mode,
owner and times) is captured exactly, so a revert removes a file that was not there or
puts the old one back as it was.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from typing import Any

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.knob import Knob
from oseprovd.tuning.roots import exists

FILE_LIMIT = 1 << 20


class ManagedFileKnob(Knob):
    """One file `directory/name` under the target root; applicable when the directory
    exists (its package is installed: the file would mean nothing otherwise)."""

    # A switch replaces the whole file in one rename: restoring the old profile's file
    # first would only open a window with no file at all.
    restore_before_switch = False
    slow_write = True
    coupling = ""

    def __init__(self, knob_id: str, target: TargetRoot, directory: str, name: str) -> None:
        super().__init__(knob_id)
        self.target = target
        self.directory = directory
        self.name = name
        self.rel = f"{directory}/{name}"
        self._prepared: tuple[str, str] | None = None  # (text, temp file name)

    @property
    def reason(self) -> str:
        return f"/{self.directory} does not exist on this machine"

    def _applicable(self) -> bool:
        st = self.target.lstat(self.directory) if exists(self.target, self.directory) else None
        return st is not None and stat.S_ISDIR(st.st_mode)

    def read(self) -> str | None:
        if not self._applicable():
            return None
        try:
            return self.target.read_bytes(self.rel, limit=FILE_LIMIT).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def same(self, current: str | None, target: str) -> bool:
        return current == target

    def write(self, value: str) -> None:
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[0] == value:
            self.target.commit_write(self.rel, prepared[1])
            return
        if prepared is not None:
            self.target.discard_write(self.rel, prepared[1])
        self.target.atomic_write(self.rel, value.encode(), mode=0o644, uid=0, gid=0)

    def prepare(self, value: str) -> None:
        """Write (and fsync) the file's new text to a temp file now, invisibly, so that
        write(value) later is a rename. The engine does this before its journal record
        is on disk: both fsyncs then share the file system's commit. A temp left by a
        process killed meanwhile is removed by the next write or restore."""
        self.discard_prepared()
        self.remove_stale_temps()
        self._prepared = (value, self.target.prepare_write(self.rel, value.encode(),
                                                           mode=0o644, uid=0, gid=0))

    def discard_prepared(self) -> None:
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            self.target.discard_write(self.rel, prepared[1])

    def capture(self) -> dict[str, Any]:
        if not self._applicable():
            return {"value": None}
        st = self.target.lstat(self.rel)
        if st is None:
            return {"value": "", "exists": False}
        data = self.target.read_bytes(self.rel, limit=FILE_LIMIT)
        return {
            "value": data.decode("utf-8", "replace"),
            "exists": True,
            "bytes": base64.b64encode(data).decode(),
            "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid,
            "gid": st.st_gid,
            "atime_ns": st.st_atime_ns,
            "mtime_ns": st.st_mtime_ns,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        if saved.get("value") is None:
            return
        self.remove_stale_temps()
        if not saved.get("exists"):
            self.target.unlink(self.rel, missing_ok=True)
            return
        self.target.atomic_write(
            self.rel,
            base64.b64decode(saved["bytes"]),
            mode=int(saved["mode"]),
            uid=int(saved["uid"]),
            gid=int(saved["gid"]),
        )
        # Times too: a restored file should look untouched to backup and config tools.
        fd = self.target.open_dir(self.directory)
        try:
            os.utime(self.name, ns=(int(saved["atime_ns"]), int(saved["mtime_ns"])),
                     dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def remove_stale_temps(self) -> None:
        """Temp files of this file's atomic writes that a killed process left (named by
        TargetRoot.prepare_write): a rollback leaves no trace either."""
        if not self._applicable():
            return
        pattern = re.compile(rf"^\.{re.escape(self.name)}\.ose-[0-9a-f]{{12}}$")
        fd = self.target.open_dir(self.directory)
        try:
            for entry in os.listdir(fd):
                if pattern.fullmatch(entry):
                    st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        os.unlink(entry, dir_fd=fd)
        finally:
            os.close(fd)

    def is_restored(self, saved: dict[str, Any]) -> bool:
        # Reading the file may move its access time; everything else must match.
        now = self.capture()
        now.pop("atime_ns", None)
        return now == {k: v for k, v in saved.items() if k != "atime_ns"}

    def display(self, saved: dict[str, Any]) -> str | None:
        if saved.get("value") is None:
            return None
        return str(saved["value"]) if saved.get("exists") else "(no file)"
