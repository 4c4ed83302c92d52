"""The real oseprovd as a subprocess: started, waited for (it owns its bus name), stopped.

Contract with the daemon (oseprovd/__main__.py):
    python -m oseprovd --bus ADDRESS --state-dir STATE --root ROOT --log-level debug [...]
run with cwd = the repo root, stdout and stderr to a log file. It is ready when the
process itself owns org.ose.Provisioning1 on that bus; exiting first is a failure that
carries its log. The log is attached to the report of a failing test (tests/harness/logs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

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

    def close(self, grace: float = 5.0) -> None:
        """Fixture teardown: SIGTERM (so its own children go too), SIGKILL after `grace`
        seconds, and stop reporting the log."""
        if self.running:
            with contextlib.suppress(TimeoutError):  # stop() has SIGKILLed it then
                self.stop(signal.SIGTERM, grace)
        logs.unregister(self.log_path)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        return [m for line in f if (m := line.split()[4]).startswith(prefix)]


class DaemonFactory:
    """The `ose_daemon` fixture: `ose_daemon.start(**kw)` (or `ose_daemon(**kw)`)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self.made: list[tuple[DaemonProcess, Path]] = []

    def start(
        self,
        bus_address: str | None = None,
        extra_args: Sequence[str] = (),
        *,
        module: str = "oseprovd",
        start: bool = True,
        ready_timeout: float = 15.0,
    ) -> DaemonProcess:
        """A DaemonProcess with a fresh base dir (0755) holding state/ (0700), root/ (0755)
        and the log; started and ready unless start=False. Without bus_address it runs
        on `system_bus` with the real `polkitd`."""
        if bus_address is None:
            self._request.getfixturevalue("polkitd")
            bus_address = self._request.getfixturevalue("system_bus").address
        base = Path(tempfile.mkdtemp(prefix="ose-daemon-"))
        base.chmod(0o755)
        (base / "state").mkdir(mode=0o700)
        (base / "root").mkdir(mode=0o755)
        daemon = DaemonProcess(bus_address, base / "state", base / "root", extra_args,
                               log_path=base / f"{module}.log", module=module,
                               ready_timeout=ready_timeout)
        self.made.append((daemon, base))
        return daemon.start() if start else daemon

    __call__ = start

    def close(self) -> None:
        """Kill every daemon and remove its dirs (a base with a mount under it is kept)."""
        leftovers = []
        for daemon, base in self.made:
            daemon.close()
            if mounts := _mounts_under(base):
                leftovers += mounts
            else:
                shutil.rmtree(base, ignore_errors=True)
        if leftovers:
            pytest.fail(f"mounts left under a daemon's dirs: {leftovers}", pytrace=False)
