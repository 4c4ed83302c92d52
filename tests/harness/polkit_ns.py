"""Runs inside `unshare --mount --propagation private`: bind-mount the test's actions and
rules directories over polkit's, then become polkitd. The mounts live only in this new
mount namespace and vanish with it; the host's /usr/share and /etc are never written.

usage: polkit_ns.py ACTIONS_DIR RULES_DIR -- POLKITD [ARGS...]
"""

from __future__ import annotations

import os
import subprocess
import sys

TARGETS = ("/usr/share/polkit-1/actions", "/etc/polkit-1/rules.d")


def main(argv: list[str]) -> None:
    sep = argv.index("--")
    sources, command = argv[:sep], argv[sep + 1 :]
    if len(sources) != len(TARGETS) or not command:
        sys.exit(__doc__)
    for src, dst in zip(sources, TARGETS, strict=True):
        # mount(8) with argv, no shell; a failure aborts before polkitd starts.
        if subprocess.run(["mount", "--bind", "--", src, dst], check=False).returncode:
            sys.exit(f"polkit_ns: mount --bind {src} {dst} failed")
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
