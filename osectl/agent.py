"""A polkit text agent for the terminal, as systemctl starts one.

polkit asks for a password only through an authentication agent. A desktop session has
one; a shell on a console or over ssh usually has none, and an admin's `osectl snapshot
rollback` would just be refused. So when a call is refused, osectl is on a terminal, not
root, and may ask, it starts `pkttyagent` for itself (registered for this process only)
and makes the call once more; polkit then asks on the terminal. In a logind session the
agent is a `--fallback`, so a desktop's own agent wins; outside one it must not be:
polkit only considers a fallback agent after it has found the caller's session.
A refused call did nothing (the daemon authorizes before it acts), so the second try is
safe. Nothing is started for calls that pass, which is almost all of them.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time

PKTTYAGENT = "pkttyagent"
# pkttyagent closes its notify fd once it is registered with polkitd.
REGISTER_TIMEOUT = 10.0


class TtyAgent:
    def __init__(self, bus_address: str | None) -> None:
        self._address = bus_address
        self._proc: subprocess.Popen[bytes] | None = None
        self._tried = False

    @staticmethod
    def wanted() -> bool:
        """Someone is at a terminal to type a password, and it is not root (polkit grants
        root everything without asking)."""
        try:
            return os.isatty(0) and os.geteuid() != 0
        except OSError:
            return False

    def start(self) -> bool:
        """Start the agent once; whether one is now registered for this process."""
        if self._tried:
            return self._proc is not None
        self._tried = True
        binary = shutil.which(PKTTYAGENT)
        if binary is None or not self.wanted():
            return False
        env = dict(os.environ)
        if self._address:  # the agent registers with the polkitd on osectl's bus
            env["DBUS_SYSTEM_BUS_ADDRESS"] = self._address
        rfd, wfd = os.pipe()
        argv = [binary, "--notify-fd", str(wfd)]
        if os.environ.get("XDG_SESSION_ID"):
            argv.append("--fallback")
        try:
            proc = subprocess.Popen(argv, pass_fds=(wfd,), env=env, stdout=subprocess.DEVNULL)
        except OSError:
            os.close(rfd)
            os.close(wfd)
            return False
        os.close(wfd)
        try:
            registered = _wait_closed(rfd, proc, REGISTER_TIMEOUT)
        finally:
            os.close(rfd)
        if not registered:
            _end(proc)
            return False
        self._proc = proc
        return True

    def disable(self) -> None:
        self.stop()
        self._tried = True

    def stop(self) -> None:
        if self._proc is not None:
            _end(self._proc)
            self._proc = None


def _wait_closed(rfd: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Until the agent closes the notify pipe (registered) or exits (it could not)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([rfd], [], [], min(left, 0.2))
        if ready and not os.read(rfd, 64):
            # EOF: registered, unless the agent closed it by dying.
            return proc.poll() is None
        if proc.poll() is not None:
            return False
    return False


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
