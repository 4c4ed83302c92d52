"""Helpers for the OS-integration tests: real tools, `make install`, a private system bus."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

NOBODY = 65534


def require_tool(name: str) -> str:
    """Path of a real tool; missing: skip, or fail when CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def make(
    *targets: str,
    repo: Path = REPO,
    build: Path,
    umask: int = 0o077,
    python: str = sys.executable,
    **variables: str,
) -> subprocess.CompletedProcess[str]:
    """Run make in `repo` with build output under `build`; a restrictive umask by default,
    to show that installed modes do not depend on the caller's."""
    argv = [require_tool("make"), "--no-print-directory", "-C", str(repo), *targets,
            f"BUILD={build}", f"PYTHON={python}"]
    argv += [f"{key}={value}" for key, value in variables.items()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, umask=umask,
                          check=False)


def copy_sources(dest: Path) -> Path:
    """A copy of the tracked files of the repository, to break on purpose."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if not src.exists():  # deleted in the work tree, not committed yet
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


# The default policy of Debian's /usr/share/dbus-1/system.conf: nobody owns a name or
# sends a method call unless a system.d file allows it.
SYSTEM_BUS_DEFAULT_POLICY = """
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
  </policy>
"""


@contextmanager
def system_bus(
    *,
    policy_dir: Path | None,
    service_dir: Path | None = None,
    extra: str = "",
    systemd_activation: bool = False,
) -> Iterator[str]:
    """A private dbus-daemon of type system with the default policy above, the bus
    policy files of `policy_dir` and the activation files of `service_dir`.
    Yields its address once it listens."""
    dbus_daemon = require_tool("dbus-daemon")
    # Not under pytest's tmp_path (0700): clients run as nobody and must reach the socket.
    workdir = Path(tempfile.mkdtemp(prefix="ose-test-bus-"))
    workdir.chmod(0o755)
    socket = workdir / "bus"
    parts = [
        '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"',
        ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">',
        "<busconfig>",
        "  <type>system</type>",
        f"  <listen>unix:path={socket}</listen>",
        "  <auth>EXTERNAL</auth>",
        SYSTEM_BUS_DEFAULT_POLICY,
        extra,
    ]
    if service_dir is not None:
        parts.append(f"  <servicedir>{service_dir}</servicedir>")
    if policy_dir is not None:
        parts.append(f"  <includedir>{policy_dir}</includedir>")
    parts.append("</busconfig>\n")
    config = workdir / "bus.conf"
    config.write_text("\n".join(parts))
    argv = [dbus_daemon, f"--config-file={config}", "--nofork", "--print-address=1"]
    if systemd_activation:
        argv.append("--systemd-activation")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()  # printed once it listens
        if not address:
            proc.wait(timeout=10)
            pytest.fail(f"dbus-daemon did not start: {proc.stderr.read() if proc.stderr else ''}")
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def dbus_send(address: str, dest: str, path: str, method: str, *args: str,
              uid: int | None = None) -> subprocess.CompletedProcess[str]:
    """A method call with the real dbus-send, as `uid` (root when None)."""
    argv = [require_tool("dbus-send"), f"--bus={address}", "--print-reply",
            "--reply-timeout=5000", f"--dest={dest}", path, method, *args]
    if uid is None:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                          user=uid, group=uid, extra_groups=[])
