"""Tuning profiles: TOML data with `include` inheritance and conditional overrides.

A profile file has a [profile] table (description, include, priority, recommend
conditions) and setting sections: [cpu], [memory], [disk], [network], [sysctl], [limits],
plus [[override]] entries whose settings apply only when their `when` conditions hold on
the machine. Every value is checked when the file is loaded; errors name file and key.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oseprovd import errors
from oseprovd.tuning import cpu, disk, limits, memory, power, sysctl
from oseprovd.tuning.conditions import Conditions
from oseprovd.tuning.facts import MachineFacts
from oseprovd.tuning.knob import normalize_value
from oseprovd.tuning.network import NETWORK_KEYS

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "tuning-profiles"
MAX_FILE = 256 * 1024
MAX_INCLUDE_DEPTH = 8
SECTIONS = ("cpu", "power", "memory", "disk", "network", "sysctl", "limits")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise errors.InvalidArguments(
            f"invalid profile name {name!r}: lowercase letters, digits and '_', "
            "starting with a letter"
        )
    return name


@dataclass
class Settings:
    """What a profile wants, keyed the way knobs are expanded from it."""

    sysctl: dict[str, str] = field(default_factory=dict)
    cpu: dict[str, str] = field(default_factory=dict)
    power: dict[str, str] = field(default_factory=dict)
    memory: dict[str, str] = field(default_factory=dict)
    disk_scheduler: dict[str, list[str]] = field(default_factory=dict)  # type -> prefs
    disk_read_ahead: dict[str, str] = field(default_factory=dict)  # type -> kb
    limits: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # "sysctl.vm.swappiness" -> where

    def update(self, other: Settings) -> None:
        self.sysctl.update(other.sysctl)
        self.cpu.update(other.cpu)
        self.power.update(other.power)
        self.memory.update(other.memory)
        self.disk_scheduler.update(other.disk_scheduler)
        self.disk_read_ahead.update(other.disk_read_ahead)
        self.limits.update(other.limits)
        self.sources.update(other.sources)


class ProfileMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=500)
    include: list[str] = []
    priority: int = Field(default=0, ge=0, le=1000)
    recommend: Conditions | None = None


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: Conditions
    cpu: dict[str, Any] = {}
    power: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    disk: dict[str, Any] = {}
    network: dict[str, Any] = {}
    sysctl: dict[str, Any] = {}
    limits: dict[str, Any] = {}


@dataclass
class Profile:
    name: str
    origin: str
    meta: ProfileMeta
    base: Settings
    overrides: list[tuple[Conditions, Settings]]


class _Parser:
    """Turns one file's raw sections into Settings, with errors naming file and key."""

    def __init__(self, origin: str, profile: str) -> None:
        self.origin = origin
        self.profile = profile

    def fail(self, where: str, message: str) -> errors.InvalidArguments:
        return errors.InvalidArguments(f"{self.origin}: {where}: {message}")

    def value(self, where: str, raw: object) -> str:
        ok = isinstance(raw, bool | int | str) or (
            isinstance(raw, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                          for v in raw)
        )
        if not ok:
            raise self.fail(where, f"unsupported value {raw!r} (use a number, string, "
                                   "boolean or list of numbers)")
        return normalize_value(raw)

    def checked(self, where: str, check: Callable[[str], str], raw: object) -> str:
        try:
            return check(self.value(where, raw))
        except ValueError as e:
            raise self.fail(where, str(e)) from None

    def sysctl_value(self, out: Settings, where: str, key: str, raw: object) -> None:
        if key in out.sysctl:
            raise self.fail(where, f"sysctl {key} is set twice in this file "
                                   f"(also at {out.sources['sysctl.' + key]})")
        try:
            out.sysctl[key] = sysctl.check_value(key, self.value(where, raw))
        except errors.InvalidArguments as e:
            raise self.fail(where, str(e)) from None
        out.sources["sysctl." + key] = f"{self.profile}: {where}"

    def parse(self, sections: dict[str, Any], prefix: str = "") -> Settings:
        out = Settings()
        for name in SECTIONS:
            body = sections.get(name) or {}
            if not isinstance(body, dict):
                raise self.fail(f"{prefix}[{name}]", "must be a table")
            for key, raw in body.items():
                where = f"{prefix}[{name}] {key}"
                getattr(self, f"_{name}")(out, where, key, raw)
        return out

    def _sysctl(self, out: Settings, where: str, key: str, raw: object) -> None:
        self.sysctl_value(out, where, key, raw)

    def _network(self, out: Settings, where: str, key: str, raw: object) -> None:
        if key not in NETWORK_KEYS:
            raise self.fail(where, f"unknown network setting (known: {', '.join(NETWORK_KEYS)})")
        self.sysctl_value(out, where, NETWORK_KEYS[key], raw)

    def _memory(self, out: Settings, where: str, key: str, raw: object) -> None:
        if key in memory.MEMORY_SYSCTLS or f"vm.{key}" in sysctl.BYTES_FORMS:
            # The byte forms are refused by the sysctl check, which says what to use.
            self.sysctl_value(out, where, memory.MEMORY_SYSCTLS.get(key, f"vm.{key}"), raw)
            return
        if key not in memory.MEMORY_KNOBS:
            known = [*memory.MEMORY_SYSCTLS, *memory.MEMORY_KNOBS]
            raise self.fail(where, f"unknown memory setting (known: {', '.join(known)})")
        out.memory[key] = self.checked(where, lambda v: memory.check_memory_value(key, v), raw)
        out.sources["memory." + key] = f"{self.profile}: {where}"

    def _cpu(self, out: Settings, where: str, key: str, raw: object) -> None:
        out.cpu[key] = self.checked(where, lambda v: cpu.check_cpu_value(key, v), raw)
        out.sources["cpu." + key] = f"{self.profile}: {where}"

    def _power(self, out: Settings, where: str, key: str, raw: object) -> None:
        out.power[key] = self.checked(where, lambda v: power.check_power_value(key, v), raw)
        out.sources["power." + key] = f"{self.profile}: {where}"

    def _limits(self, out: Settings, where: str, key: str, raw: object) -> None:
        out.limits[key] = self.checked(where, lambda v: limits.check_limit(key, v), raw)
        out.sources["limits." + key] = f"{self.profile}: {where}"

    def _disk(self, out: Settings, where: str, key: str, raw: object) -> None:
        if key not in ("scheduler", "read_ahead_kb"):
            raise self.fail(where, "unknown disk setting (known: scheduler, read_ahead_kb)")
        # One value for all device types, or a table by type (with "default").
        per_type = raw if isinstance(raw, dict) else {"": raw}
        for kind, value in per_type.items():
            spot = f"{where}.{kind}" if kind else where
            if kind and kind not in (*disk.DISK_TYPES, "default"):
                raise self.fail(spot, f"unknown device type (known: {', '.join(disk.DISK_TYPES)}, "
                                      "default)")
            kinds = [kind] if kind else [*disk.DISK_TYPES, "default"]
            if key == "scheduler":
                prefs = value if isinstance(value, list) else [value]
                if not prefs or not all(isinstance(p, str) for p in prefs):
                    raise self.fail(spot, "scheduler is a name or a list of names to try in order")
                checked = [self.checked(spot, disk.check_scheduler, p) for p in prefs]
                out.disk_scheduler.update(dict.fromkeys(kinds, checked))
            else:
                out.disk_read_ahead.update(
                    dict.fromkeys(kinds, self.checked(spot, disk.check_read_ahead, value)))
            for k in kinds:
                out.sources[f"disk.{key}.{k}"] = f"{self.profile}: {spot}"


def _pydantic_message(origin: str, where: str, e: ValidationError) -> str:
    first = e.errors()[0]
    loc = ".".join(str(p) for p in (where, *first["loc"]) if p != "")
    return f"{origin}: {loc}: {first['msg']}"


def parse_profile(name: str, text: str, origin: str) -> Profile:
    check_name(name)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise errors.InvalidArguments(f"{origin}: not valid TOML: {e}") from None
    unknown = set(raw) - {"profile", "override", *SECTIONS}
    if unknown:
        raise errors.InvalidArguments(
            f"{origin}: unknown table(s) {', '.join(sorted(unknown))} (known: profile, "
            f"override, {', '.join(SECTIONS)})"
        )
    try:
        meta = ProfileMeta.model_validate(raw.get("profile", {}))
        overrides = [Override.model_validate(o) for o in raw.get("override", [])]
    except ValidationError as e:
        raise errors.InvalidArguments(_pydantic_message(origin, "profile", e)) from None
    for inc in meta.include:
        if not isinstance(inc, str) or not NAME_RE.fullmatch(inc):
            raise errors.InvalidArguments(f"{origin}: profile.include: bad name {inc!r}")
    parser = _Parser(origin, name)
    base = parser.parse(raw)
    parsed = [
        (o.when, parser.parse(o.model_dump(exclude={"when"}), prefix=f"override[{i}] "))
        for i, o in enumerate(overrides)
    ]
    return Profile(name=name, origin=origin, meta=meta, base=base, overrides=parsed)


def _read_profile_file(path: Path) -> str:
    # O_NOFOLLOW and fstat on the opened file: no symlink or FIFO gets swapped in.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise errors.InvalidArguments(f"{path}: not a regular file")
        data = f.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise errors.InvalidArguments(f"{path}: larger than {MAX_FILE} bytes")
    return data.decode("utf-8")


class ProfileCatalog:
    """Shipped profiles plus an admin's directory (same name: the admin's file wins).

    A broken admin file does not hide the others: its error is kept and raised when
    that profile is asked for.
    """

    def __init__(self, shipped_dir: Path = SHIPPED_DIR, extra_dir: Path | None = None) -> None:
        self.profiles: dict[str, Profile] = {}
        self.broken: dict[str, str] = {}
        for directory, strict in ((shipped_dir, True), (extra_dir, False)):
            if directory is None or not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.toml")):
                name = path.name[: -len(".toml")]
                try:
                    self.profiles[name] = parse_profile(name, _read_profile_file(path), str(path))
                    self.broken.pop(name, None)
                except (errors.InvalidArguments, OSError, UnicodeDecodeError) as e:
                    if strict:
                        raise
                    self.broken[name] = str(e)
        for name in list(self.profiles):
            try:
                self._chain(name, [])
            except errors.InvalidArguments as e:
                self.broken[name] = str(e)
                del self.profiles[name]

    def names(self) -> list[str]:
        return sorted(self.profiles)

    def get(self, name: str) -> Profile:
        check_name(name)
        if name in self.broken:
            raise errors.InvalidArguments(f"profile {name} is broken: {self.broken[name]}")
        if name not in self.profiles:
            raise errors.NotFound(f"no tuning profile named {name!r}; see the profile list")
        return self.profiles[name]

    def _chain(self, name: str, seen: list[str]) -> list[Profile]:
        """The profile and its includes, parents first."""
        if name in seen:
            raise errors.InvalidArguments(
                f"profile include cycle: {' -> '.join([*seen, name])}")
        if len(seen) >= MAX_INCLUDE_DEPTH:
            raise errors.InvalidArguments(f"profile includes nest deeper than {MAX_INCLUDE_DEPTH}")
        if name not in self.profiles:
            raise errors.InvalidArguments(
                f"profile {seen[-1] if seen else name} includes unknown profile {name!r}")
        profile = self.profiles[name]
        chain: list[Profile] = []
        for parent in profile.meta.include:
            chain += self._chain(parent, [*seen, name])
        return [*chain, profile]

    def includes(self, name: str) -> list[str]:
        return [p.name for p in self._chain(self.get(name).name, [])][:-1]

    def resolve(self, name: str, facts: MachineFacts) -> Settings:
        """The settings of `name` on a machine with these facts."""
        out = Settings()
        for profile in self._chain(self.get(name).name, []):
            out.update(profile.base)
            for when, settings in profile.overrides:
                if when.holds(facts):
                    out.update(settings)
        return out
