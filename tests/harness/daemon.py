"""The real oseprovd as a subprocess: started, waited for (it owns its bus name), stopped.

Contract with the daemon (oseprovd/__main__.py):
    python -m oseprovd --bus ADDRESS --state-dir STATE --root ROOT --log-level debug [...]
run with cwd = the repo root, stdout and stderr to a log file. It is ready when the
process itself owns org.ose.Provisioning1 on that bus; exiting first is a failure that
carries its log. The log is attached to the report of a failing test (tests/harness/logs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.harness import logs
from tests.harness.busclient import wait_for_name_sync
from tests.harness.components import REPO_ROOT

BUS_NAME = "org.ose.Provisioning1"


class DaemonStartError(RuntimeError):
    pass


class DaemonProcess:
    def __init__(
        self,
        bus_address: str,
        state_dir: Path,
        root: Path,
        extra_args: Sequence[str] = (),
        *,
        log_path: Path | None = None,
        module: str = "oseprovd",
        ready_timeout: float = 15.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.bus_address = bus_address
        self.state_dir = Path(state_dir)
        self.root = Path(root)
        self.extra_args = list(extra_args)
        self.log_path = log_path or self.state_dir.parent / f"{module}.log"
        self.module = module
        self.ready_timeout = ready_timeout
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        logs.register(f"{module} (daemon under test)", self.log_path)

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", self.module, "--bus", self.bus_address,
                "--state-dir", str(self.state_dir), "--root", str(self.root),
                "--log-level", "debug", *self.extra_args]

    @property
    def pid(self) -> int:
        assert self.proc is not None, "daemon not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> DaemonProcess:
        """Start and wait until this very process owns the bus name."""
        if self.running:
            raise RuntimeError("daemon already running")
        self.starts += 1
        env = dict(os.environ if self.env is None else self.env)
        env.update({"DBUS_SYSTEM_BUS_ADDRESS": self.bus_address, "PYTHONUNBUFFERED": "1"})
        with self.log_path.open("ab") as log:
            log.write(f"=== harness: start #{self.starts}: {self.argv}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, cwd=REPO_ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            wait_for_name_sync(self.bus_address, BUS_NAME, self.ready_timeout,
                               pid=self.proc.pid, died=self._died)
        except (RuntimeError, TimeoutError) as e:
            self.kill()
            raise DaemonStartError(f"{self.module} did not become ready: {e}\n"
                                   f"--- its log ---\n{self.log_text()}") from None
        return self

    def _died(self) -> str | None:
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"the daemon exited with status {self.proc.returncode} first"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` and wait; returns the exit status (negative: killed by a signal).
        If it outlives `timeout` it is SIGKILLed and TimeoutError is raised."""
        if self.proc is None:
            raise RuntimeError("daemon not started")
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TimeoutError(
                    f"{self.module} still running {timeout} s after {signal.Signals(sig).name}"
                ) from None
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL (no chance to clean up) and reap."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def restart(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> DaemonProcess:
        if self.running:
            self.stop(sig, timeout)
        return self.start()

    def close(self) -> None:
        """Kill if still running and stop reporting the log (fixture teardown)."""
        if self.running:
            self.kill()
        logs.unregister(self.log_path)
