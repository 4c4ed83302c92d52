"""What every long-running component of the harness shares: how it is stopped and
cleaned up (a context manager around start/stop)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.harness import logs


class ManagedProcess:
    """A child process with a log and a temp dir; stop() ends it (TERM, then KILL after
    5 s), forgets its log and removes the dir. Subclasses implement start()."""

    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    dir: Path | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.log_path is not None:
            logs.unregister(self.log_path)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
