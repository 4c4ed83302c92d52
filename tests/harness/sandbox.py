"""A whole OSE stack in a sandbox, for `scripts/demo`: a private system bus with the
project's bus policy, the real polkitd with the project's actions, and oseprovd with a
throwaway state dir and target root. Nothing is installed into the host.

    python -m tests.harness.sandbox          # start, show `osectl status`, wait for Ctrl-C
    python -m tests.harness.sandbox --once   # start, show, stop (what CI runs)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.harness.daemon import DaemonProcess
from tests.harness.polkit import PolkitDaemon
from tests.harness.sysbus import PrivateSystemBus
from tests.harness.users import ensure_test_users

VENV_BIN = Path(sys.executable).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="show the status and stop")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the sandbox runs a system bus and polkitd: run it as root", file=sys.stderr)
        return 1
    ensure_test_users()
    base = Path(tempfile.mkdtemp(prefix="ose-sandbox-"))
    base.chmod(0o755)
    (base / "root").mkdir()
    try:
        with PrivateSystemBus() as bus, PolkitDaemon(bus.address):
            daemon = DaemonProcess(bus.address, base / "state", base / "root",
                                   log_path=base / "oseprovd.log").start()
            osectl = [str(VENV_BIN / "osectl"), "--address", bus.address]
            try:
                print(f"$ osectl status    (bus {bus.address})", flush=True)
                code = subprocess.run([*osectl, "status"], check=False).returncode
                if code != 0 or args.once:
                    return code
                print(
                    "\nThe sandbox is running. In another shell, as any user:\n"
                    f"  export DBUS_SYSTEM_BUS_ADDRESS={bus.address}\n"
                    f"  {VENV_BIN / 'osectl'} status | discover | tune list | jobs list\n"
                    "Tuning acts on this machine's kernel; what you apply is reverted when\n"
                    "the sandbox stops.\n"
                    f"Daemon log: {daemon.log_path}\nPress Ctrl-C to stop.", flush=True)
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
                return 0
            finally:
                # Tuning acts on this machine's kernel (the sandbox's root and state are
                # throwaway, /proc and /sys are not): put back what a demo applied.
                subprocess.run([*osectl, "--no-ask-password", "tune", "revert"],
                               check=False, capture_output=True, timeout=120)
                daemon.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
