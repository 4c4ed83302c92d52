"""The collectors the engine knows: name, function, timeout and groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from pydantic import BaseModel

from oseprovd.discovery.collectors import (
    applications,
    block,
    cloud,
    containers,
    cpu,
    databases,
    dmi,
    gpus,
    memory,
    mounts,
    network,
    nics,
    osinfo,
    packages,
    power,
    security,
    services,
    sockets,
    virt,
)
from oseprovd.discovery.roots import SystemRoots
from oseprovd.discovery.unitstates import UnitStateSource


@dataclass(frozen=True)
class CollectorSpec:
    name: str
    collect: Callable[[SystemRoots], BaseModel]
    timeout: float  # seconds; generous: a healthy machine answers in milliseconds
    minimal: bool = False  # part of 'min' (cheap and always useful)
    in_all: bool = True  # False: only when named (slow, or needs its own authorization)


SPECS: tuple[CollectorSpec, ...] = (
    CollectorSpec("cpu", cpu.collect, 5.0, minimal=True),
    CollectorSpec("memory", memory.collect, 5.0, minimal=True),
    CollectorSpec("block", block.collect, 10.0),
    CollectorSpec("mounts", mounts.collect, 5.0),
    CollectorSpec("nics", nics.collect, 10.0),
    CollectorSpec("gpus", gpus.collect, 10.0),
    CollectorSpec("power", power.collect, 5.0),
    CollectorSpec("dmi", dmi.collect, 5.0, minimal=True),
    CollectorSpec("virtualization", virt.collect, 5.0, minimal=True),
    CollectorSpec("cloud", cloud.collect, 5.0),
    CollectorSpec("os", osinfo.collect, 5.0, minimal=True),
    # rpm (12 s), flatpak (8 s) and snap (5 s) each have their own timeout inside.
    CollectorSpec("packages", packages.collect, 45.0),
    CollectorSpec("services", services.collect, 20.0),
    CollectorSpec("applications", applications.collect, 20.0),
    CollectorSpec("sockets", sockets.collect, 15.0),
    CollectorSpec("network", network.collect, 10.0),
    CollectorSpec("containers", containers.collect, 20.0),
    CollectorSpec("databases", databases.collect, 20.0),
    # Walks the file system and needs org.ose.discovery.audit: never part of 'all'.
    CollectorSpec("security", security.collect, 120.0, in_all=False),
)

GROUPS: dict[str, tuple[str, ...]] = {
    "hardware": ("cpu", "memory", "block", "mounts", "nics", "gpus", "power", "dmi",
                 "virtualization"),
    "software": ("os", "packages", "services", "applications"),
    # Not "network": that is the name of a collector.
    "networking": ("nics", "network", "sockets"),
}


def by_name() -> dict[str, CollectorSpec]:
    return {spec.name: spec for spec in SPECS}


def with_unit_states(specs: tuple[CollectorSpec, ...], source: UnitStateSource
                     ) -> tuple[CollectorSpec, ...]:
    """`specs` whose services collector also asks `source` for the units' states."""
    return tuple(replace(spec, collect=partial(services.collect, unit_states=source))
                 if spec.name == "services" else spec for spec in specs)
