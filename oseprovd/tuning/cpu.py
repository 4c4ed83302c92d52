"""CPU knobs, one per cpufreq policy: governor, energy-performance preference, boost."""

from __future__ import annotations

import re

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.knob import Knob
from oseprovd.tuning.roots import exists, list_dir, read_attr, write_attr

CPUFREQ = "devices/system/cpu/cpufreq"
POLICY_RE = re.compile(r"^policy[0-9]{1,5}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_+-]{0,31}$")
EPP_VALUES = ("default", "performance", "balance_performance", "balance_power", "power")


def policies(sys: TargetRoot) -> list[str]:
    return sorted(
        (p for p in list_dir(sys, CPUFREQ) if POLICY_RE.fullmatch(p)),
        key=lambda p: int(p[6:]),
    )


class _PolicyAttr(Knob):
    family = "cpu"
    power = True
    attr = ""
    available_attr = ""

    def __init__(self, sys: TargetRoot, policy: str) -> None:
        if not POLICY_RE.fullmatch(policy):
            raise ValueError(f"bad cpufreq policy {policy!r}")
        super().__init__(f"cpu:{policy}:{self.attr}")
        self.sys = sys
        self.policy = policy
        self.path = f"{CPUFREQ}/{policy}/{self.attr}"

    def read(self) -> str | None:
        return read_attr(self.sys, self.path)

    def write(self, value: str) -> None:
        write_attr(self.sys, self.path, value)

    def not_applicable_reason(self, target: str) -> str | None:
        text = read_attr(self.sys, f"{CPUFREQ}/{self.policy}/{self.available_attr}")
        if text is not None and target not in text.split():
            return f"{target!r} is not offered by this cpufreq driver (offered: {text})"
        return None


class GovernorKnob(_PolicyAttr):
    attr = "scaling_governor"
    available_attr = "scaling_available_governors"


class EppKnob(_PolicyAttr):
    attr = "energy_performance_preference"
    available_attr = "energy_performance_available_preferences"


class BoostKnob(Knob):
    """Turbo/boost as "1"/"0". Per policy where the driver offers it (amd-pstate), else the
    global cpufreq/boost (acpi-cpufreq), else intel_pstate/no_turbo, which is inverted."""

    family = "cpu"
    power = True

    def __init__(self, sys: TargetRoot, scope: str) -> None:
        super().__init__(f"cpu:{scope}:boost")
        self.sys = sys
        if scope == "global":
            self.path, self.inverted = f"{CPUFREQ}/boost", False
        elif scope == "intel_pstate":
            self.path, self.inverted = "devices/system/cpu/intel_pstate/no_turbo", True
        elif POLICY_RE.fullmatch(scope):
            self.path, self.inverted = f"{CPUFREQ}/{scope}/boost", False
        else:
            raise ValueError(f"bad boost scope {scope!r}")

    def read(self) -> str | None:
        raw = read_attr(self.sys, self.path)
        if raw not in ("0", "1"):
            return None
        return ("0" if raw == "1" else "1") if self.inverted else raw

    def write(self, value: str) -> None:
        raw = ("0" if value == "1" else "1") if self.inverted else value
        write_attr(self.sys, self.path, raw)


def boost_scopes(sys: TargetRoot) -> list[str]:
    per_policy = [p for p in policies(sys) if exists(sys, f"{CPUFREQ}/{p}/boost")]
    if per_policy:
        return per_policy
    if exists(sys, f"{CPUFREQ}/boost"):
        return ["global"]
    if exists(sys, "devices/system/cpu/intel_pstate/no_turbo"):
        return ["intel_pstate"]
    return []


def check_cpu_value(key: str, value: str) -> str:
    if key in ("governor", "energy_performance_preference"):
        if not NAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid {key} name")
        if key == "energy_performance_preference" and value not in EPP_VALUES:
            raise ValueError(f"{value!r} is not one of {', '.join(EPP_VALUES)}")
        return value
    if key == "boost":
        if value not in ("0", "1"):
            raise ValueError("boost is true or false")
        return value
    raise ValueError(f"unknown cpu setting {key!r} (known: governor, "
                     "energy_performance_preference, boost)")


def expand(sys: TargetRoot, wanted: dict[str, str]) -> list[tuple[Knob, str, str]]:
    """(knob, target, key) for every policy; governor before EPP (EPP depends on it)."""
    out: list[tuple[Knob, str, str]] = []
    pols = policies(sys)
    if "governor" in wanted:
        out += [(GovernorKnob(sys, p), wanted["governor"], "governor") for p in pols]
    if "energy_performance_preference" in wanted:
        epp = wanted["energy_performance_preference"]
        out += [(EppKnob(sys, p), epp, "energy_performance_preference") for p in pols]
    if "boost" in wanted:
        out += [(BoostKnob(sys, s), wanted["boost"], "boost") for s in boost_scopes(sys)]
    return out


def knob_from_id(sys: TargetRoot, scope: str, attr: str) -> Knob:
    if attr == "scaling_governor":
        return GovernorKnob(sys, scope)
    if attr == "energy_performance_preference":
        return EppKnob(sys, scope)
    if attr == "boost":
        return BoostKnob(sys, scope)
    raise ValueError(f"unknown cpu knob {attr!r}")
