"""Runs inside `unshare --mount --propagation private`: make SOCKET this namespace's
/run/dbus/system_bus_socket, drop to USER, then exec COMMAND.

Why: polkit's setuid password helper (polkit-agent-helper-1) ignores
DBUS_SYSTEM_BUS_ADDRESS, as every setuid GLib program does, and answers polkitd on the
well-known system bus socket. A test's polkitd lives on a private bus, so the helper must
find that bus at the well-known path. A tmpfs over /run keeps the host's /run untouched;
the mounts vanish with the namespace.

usage: system_bus_ns.py SOCKET USER -- COMMAND [ARGS...]
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys

WELL_KNOWN = "/run/dbus/system_bus_socket"


def _mount(*args: str) -> None:
    argv = ["mount", *args]
    if subprocess.run(argv, check=False).returncode:  # argv, no shell
        sys.exit(f"system_bus_ns: {' '.join(argv)} failed")


def main(argv: list[str]) -> None:
    sep = argv.index("--") if "--" in argv else -1
    if sep != 2 or len(argv) < 4:
        sys.exit(__doc__)
    socket, user, command = argv[0], argv[1], argv[3:]
    _mount("-t", "tmpfs", "-o", "mode=0755", "--", "ose-run", "/run")
    os.makedirs(os.path.dirname(WELL_KNOWN), mode=0o755)
    open(WELL_KNOWN, "w").close()
    _mount("--bind", "--", socket, WELL_KNOWN)
    pw = pwd.getpwnam(user)
    os.initgroups(user, pw.pw_gid)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    if os.geteuid() != pw.pw_uid:
        sys.exit("system_bus_ns: privileges were not dropped")
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
