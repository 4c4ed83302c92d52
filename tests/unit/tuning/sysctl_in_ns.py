"""Run systemd-sysctl on one file against a sandbox /proc/sys, inside a private mount
namespace (started by `unshare --mount --propagation private`):

    python -m tests.unit.tuning.sysctl_in_ns SANDBOX_PROC_SYS CONF SYSTEMD_SYSCTL

The sandbox tree is bind-mounted over /proc/sys in this namespace only; before running
systemd-sysctl we check the bind took (the sandbox's osrelease reads back), so a failed
mount can never let it write the host's kernel settings.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .sandbox import RELEASE


def main() -> None:
    tree, conf, tool = sys.argv[1], sys.argv[2], sys.argv[3]
    subprocess.run(["mount", "--bind", "--", tree, "/proc/sys"], check=True)
    with open("/proc/sys/kernel/osrelease") as f:
        if f.read().strip() != RELEASE:
            sys.exit("the sandbox is not mounted over /proc/sys: refusing to run")
    os.execv(tool, [tool, "--", conf])


if __name__ == "__main__":
    main()
