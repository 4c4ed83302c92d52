"""Memory knobs: transparent hugepages, zswap, and the vm.* sysctls under friendly names."""

from __future__ import annotations

from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.knob import Knob
from oseprovd.tuning.roots import read_attr, write_attr
from oseprovd.tuning.selection import SelectionKnob

THP = "kernel/mm/transparent_hugepage"
THP_ENABLED = ("always", "madvise", "never")
THP_DEFRAG = ("always", "defer", "defer+madvise", "madvise", "never")

# Friendly names in a profile's [memory] section -> sysctl keys.
MEMORY_SYSCTLS = {
    "swappiness": "vm.swappiness",
    "dirty_ratio": "vm.dirty_ratio",
    "dirty_background_ratio": "vm.dirty_background_ratio",
    "dirty_expire_centisecs": "vm.dirty_expire_centisecs",
    "dirty_writeback_centisecs": "vm.dirty_writeback_centisecs",
    "vfs_cache_pressure": "vm.vfs_cache_pressure",
    "max_map_count": "vm.max_map_count",
    "zone_reclaim_mode": "vm.zone_reclaim_mode",
}
# sysfs knobs of the [memory] section.
MEMORY_KNOBS = ("transparent_hugepages", "thp_defrag", "zswap")


class ThpKnob(SelectionKnob):
    family = "memory"
    coupling = ""

    def __init__(self, sys: TargetRoot, which: str) -> None:
        attr = {"transparent_hugepages": "enabled", "thp_defrag": "defrag"}[which]
        super().__init__(f"memory:{which}", sys, f"{THP}/{attr}")


class ZswapKnob(Knob):
    """zswap on/off as "1"/"0" (the file says Y/N)."""

    family = "memory"
    coupling = ""
    path = "module/zswap/parameters/enabled"

    def __init__(self, sys: TargetRoot) -> None:
        super().__init__("memory:zswap")
        self.sys = sys

    def read(self) -> str | None:
        raw = read_attr(self.sys, self.path)
        return {"Y": "1", "N": "0", "1": "1", "0": "0"}.get(raw or "")

    def write(self, value: str) -> None:
        write_attr(self.sys, self.path, "Y" if value == "1" else "N")


def check_memory_value(key: str, value: str) -> str:
    if key == "transparent_hugepages" and value not in THP_ENABLED:
        raise ValueError(f"{value!r} is not one of {', '.join(THP_ENABLED)}")
    if key == "thp_defrag" and value not in THP_DEFRAG:
        raise ValueError(f"{value!r} is not one of {', '.join(THP_DEFRAG)}")
    if key == "zswap" and value not in ("0", "1"):
        raise ValueError("zswap is true or false")
    return value


def knob_for(sys: TargetRoot, key: str) -> Knob:
    if key == "zswap":
        return ZswapKnob(sys)
    return ThpKnob(sys, key)
