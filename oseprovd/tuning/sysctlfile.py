"""The sysctl values of the active profile, also in /etc/sysctl.d/90-ose-tuning.conf.

Written so the values hold without the daemon: systemd-sysctl (or procps' sysctl
--system) applies the file at boot. Only keys that took in the kernel are written, and
every key and value is checked against the engine's allowlist again here, so a refused
key can never reach the file. Named 90-: /etc/sysctl.conf (99-sysctl.conf) and an
admin's later-sorting files still win, as they do for any vendor file.
"""

from __future__ import annotations

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.managedfile import ManagedFileKnob
from oseprovd.tuning.sysctl import check_value

SYSCTL_DIR = "etc/sysctl.d"
SYSCTL_NAME = "90-ose-tuning.conf"
SYSCTL_FILE = f"{SYSCTL_DIR}/{SYSCTL_NAME}"
KNOB_ID = "sysctl.d:file"


def render(profile: str, values: dict[str, str]) -> str:
    """The file's text: a header, then `key = value` sorted by key."""
    lines = [
        f"# Managed by oseprovd: the sysctl values of tuning profile {profile}.",
        "# Rewritten when the profile changes and removed when it is reverted; local",
        "# settings belong in another file (a later name, e.g. 99-local.conf, wins).",
        "",
    ]
    for key in sorted(values):
        lines.append(f"{key} = {check_value(key, values[key])}")
    return "\n".join(lines) + "\n"


class SysctlFileKnob(ManagedFileKnob):
    family = "sysctl.d"

    def __init__(self, target: TargetRoot) -> None:
        super().__init__(KNOB_ID, target, SYSCTL_DIR, SYSCTL_NAME)
