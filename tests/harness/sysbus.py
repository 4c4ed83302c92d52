"""A private system bus: a real dbus-daemon with the system bus's policy semantics.

The config mirrors Debian's /usr/share/dbus-1/system.conf (type system, EXTERNAL auth,
deny own and method calls by default, allow signals and replies, allow talking to the
bus driver) minus what only a booted system needs (<user>, <fork/>, syslog, pidfile,
activation). Its <includedir> holds copies of the project's own bus policy and of the
host's polkit policy, so the policy under test is the one we ship.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.harness import logs
from tests.harness.components import DBUS_DAEMON, repo_file, require
from tests.harness.process import ManagedProcess

PROJECT_POLICY = ("dbus", "org.ose.Provisioning1.conf")
HOST_POLKIT_POLICY = Path("/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf")

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <includedir>{includedir}</includedir>
</busconfig>
"""

def allow_user_to_own(name: str, user: str) -> str:
    """A policy snippet for mocks that must own a system name that the shipped policy
    reserves to someone else (org.freedesktop.PolicyKit1 belongs to user polkitd)."""
    return f'<busconfig><policy user="{user}"><allow own="{name}"/></policy></busconfig>\n'


class PrivateSystemBus(ManagedProcess):
    """`with PrivateSystemBus() as bus:` -> bus.address (unix:path=...)."""

    def __init__(
        self,
        *,
        include_project_policy: bool = True,
        include_polkit_policy: bool = True,
        extra_policy_files: Sequence[Path] = (),
        extra_policy_xml: Sequence[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        self._policies = list(extra_policy_files)
        if include_project_policy:
            self._policies.insert(0, repo_file(*PROJECT_POLICY))
        if include_polkit_policy and HOST_POLKIT_POLICY.is_file():
            self._policies.insert(0, HOST_POLKIT_POLICY)
        self._extra_xml = list(extra_policy_xml)
        self._timeout = startup_timeout
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.log_path: Path | None = None

    @property
    def socket_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "system_bus_socket"

    def start(self) -> PrivateSystemBus:
        exe = require(DBUS_DAEMON, "the private system bus is a real dbus-daemon")
        # mkdtemp makes 0700; clients of every uid must reach the socket.
        self.dir = Path(tempfile.mkdtemp(prefix="ose-sysbus-"))
        self.dir.chmod(0o755)
        includedir = self.dir / "system.d"
        includedir.mkdir(mode=0o755)
        for src in self._policies:
            shutil.copyfile(src, includedir / src.name)
        for i, xml in enumerate(self._extra_xml):
            (includedir / f"zz-extra-{i}.conf").write_text(xml)
        config = self.dir / "system.conf"
        config.write_text(CONFIG.format(socket=self.socket_path, includedir=includedir))
        self.log_path = self.dir / "dbus-daemon.log"
        # If pytest itself is killed, the bus must not outlive it (polkitd, mocks and the
        # daemon under test then exit with their bus). PDEATHSIG follows the *thread* that
        # forks: start buses from the main thread, as fixtures do.
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        rfd, wfd = os.pipe()
        try:
            with self.log_path.open("wb") as log:
                self.proc = subprocess.Popen(
                    [*prefix, exe, f"--config-file={config}", "--nofork", "--nopidfile",
                     "--nosyslog", f"--print-address={wfd}"],
                    pass_fds=(wfd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                )
            os.close(wfd)
            wfd = -1
            self.address = self._read_address(rfd)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(rfd)
            if wfd >= 0:
                os.close(wfd)
        # The socket's mode follows our umask; make sure every uid may connect.
        self.socket_path.chmod(0o666)
        logs.register(f"dbus-daemon {self.socket_path}", self.log_path)
        return self

    def _read_address(self, fd: int) -> str:
        """dbus-daemon writes its address once it listens: that is readiness."""
        deadline = time.monotonic() + self._timeout
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"dbus-daemon gave no address within {self._timeout} s")
            chunk = os.read(fd, 4096)
            if not chunk:
                assert self.log_path is not None
                raise RuntimeError(
                    f"dbus-daemon exited before listening:\n{self.log_path.read_text()}"
                )
            data += chunk
        # Use the path we chose rather than the reported one with its ",guid=" suffix.
        assert data.decode().startswith(f"unix:path={self.socket_path}")
        return f"unix:path={self.socket_path}"

