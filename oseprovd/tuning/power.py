"""Power knobs: the ACPI platform profile (firmware fan/power curve on laptops).

Like the cpu knobs these are what power-profiles-daemon, TuneD and TLP manage; the engine
leaves all of them alone while one of those is active.
"""

from __future__ import annotations

import re

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.knob import Knob
from oseprovd.tuning.roots import read_attr, write_attr

PLATFORM_PROFILE = "firmware/acpi/platform_profile"
PLATFORM_CHOICES = "firmware/acpi/platform_profile_choices"
NAME_RE = re.compile(r"^[a-z][a-z-]{0,31}$")
POWER_KEYS = ("platform_profile",)


class PlatformProfileKnob(Knob):
    family = "power"
    power = True

    def __init__(self, sys: TargetRoot) -> None:
        super().__init__("power:platform_profile")
        self.sys = sys

    def read(self) -> str | None:
        return read_attr(self.sys, PLATFORM_PROFILE)

    def write(self, value: str) -> None:
        write_attr(self.sys, PLATFORM_PROFILE, value)

    def not_applicable_reason(self, target: str) -> str | None:
        choices = (read_attr(self.sys, PLATFORM_CHOICES) or "").split()
        if target not in choices:
            return f"{target!r} is not offered by the firmware (offered: {' '.join(choices)})"
        return None


def check_power_value(key: str, value: str) -> str:
    if key not in POWER_KEYS:
        raise ValueError(f"unknown power setting {key!r} (known: {', '.join(POWER_KEYS)})")
    if not NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid platform profile name")
    return value
