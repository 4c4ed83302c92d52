"""From resolved profile settings to concrete knobs on this machine, and back from ids."""

from __future__ import annotations

from oseprovd.tuning import cpu, disk, limits, memory, power, sysctlfile
from oseprovd.tuning.knob import AbsentKnob, Knob, Setting
from oseprovd.tuning.managedfile import ManagedFileKnob
from oseprovd.tuning.network import CongestionKnob, ModuleLoader
from oseprovd.tuning.profiles import Settings
from oseprovd.tuning.roots import TuningRoots
from oseprovd.tuning.sysctl import SysctlKnob

CONGESTION = "net.ipv4.tcp_congestion_control"


class KnobFactory:
    def __init__(
        self, roots: TuningRoots, loader: ModuleLoader, disk_devices: list[str] | None = None
    ) -> None:
        self.roots = roots
        self.loader = loader
        self.disk_devices = disk_devices

    def sysctl(self, key: str) -> SysctlKnob:
        if key == CONGESTION:
            return CongestionKnob(self.roots.proc, self.roots.target, self.loader)
        return SysctlKnob(self.roots.proc, key)

    def expand(self, profile: str, s: Settings) -> list[Setting]:
        """Knobs in a fixed order: cpu (governor before EPP), power, memory, disk, sysctl,
        limits."""
        out: list[Setting] = []
        sys = self.roots.sys
        if s.cpu:
            found = cpu.expand(sys, s.cpu)
            for key in s.cpu:
                if not any(k == key for _, _, k in found):
                    reason = "no cpufreq policy offers this here"
                    absent = AbsentKnob(f"cpu:*:{key}", "cpu", reason, power=True)
                    found.append((absent, s.cpu[key], key))
            out += [Setting(k, t, s.sources.get(f"cpu.{key}", profile)) for k, t, key in found]
        if "platform_profile" in s.power:
            out.append(Setting(power.PlatformProfileKnob(sys), s.power["platform_profile"],
                               s.sources.get("power.platform_profile", profile)))
        for key, target in s.memory.items():
            out.append(Setting(memory.knob_for(sys, key), target,
                               s.sources.get(f"memory.{key}", profile)))
        for knob, target, key in disk.expand(sys, s.disk_scheduler, s.disk_read_ahead,
                                             self.disk_devices):
            out.append(Setting(knob, target, s.sources.get(f"disk.{key}", profile)))
        for key, target in s.sysctl.items():
            out.append(Setting(self.sysctl(key), target, s.sources.get(f"sysctl.{key}", profile)))
        if s.limits:
            text = limits.render(profile, s.limits)
            out.append(Setting(limits.LimitsKnob(self.roots.target), text, f"{profile}: [limits]"))
        return out

    def sysctl_file(self, profile: str, values: dict[str, str]) -> Setting:
        """The sysctl.d file holding `values` (the profile's sysctl keys that apply)."""
        return Setting(sysctlfile.SysctlFileKnob(self.roots.target),
                       sysctlfile.render(profile, values), f"{profile}: sysctl values")

    def managed_files(self) -> list[ManagedFileKnob]:
        """The files tuning owns whole (for sweeping temps a killed write left)."""
        return [limits.LimitsKnob(self.roots.target),
                sysctlfile.SysctlFileKnob(self.roots.target)]

    def from_id(self, knob_id: str) -> Knob:
        """Rebuild a knob from its id (from the journal)."""
        family, _, rest = knob_id.partition(":")
        if family == "sysctl":
            return self.sysctl(rest)
        if family == "cpu":
            scope, _, attr = rest.partition(":")
            return cpu.knob_from_id(self.roots.sys, scope, attr)
        if family == "disk":
            dev, _, attr = rest.partition(":")
            return disk.knob_from_id(self.roots.sys, dev, attr)
        if family == "memory" and rest in memory.MEMORY_KNOBS:
            return memory.knob_for(self.roots.sys, rest)
        if knob_id == "power:platform_profile":
            return power.PlatformProfileKnob(self.roots.sys)
        if knob_id == "limits:file":
            return limits.LimitsKnob(self.roots.target)
        if knob_id == sysctlfile.KNOB_ID:
            return sysctlfile.SysctlFileKnob(self.roots.target)
        raise ValueError(f"unknown knob id {knob_id!r}")
