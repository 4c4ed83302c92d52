"""systemd unit files read from the target root, with systemctl's enablement states.

This answers from files (like `systemctl --root=... list-unit-files`), so it works on an
offline target and without systemd's bus; whether a unit is *running* is the bus
layer's question for systemd when the target is the live system.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from pydantic import BaseModel

from oseprovd.discovery.fsread import TargetReader

# Search order (first hit wins), as systemd's system manager: config before vendor.
CONFIG_DIRS = ("etc/systemd/system",)
VENDOR_DIRS = ("usr/local/lib/systemd/system", "lib/systemd/system", "usr/lib/systemd/system")
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".target", ".mount", ".automount",
                 ".path", ".slice", ".swap", ".device", ".scope")
LINK_DIR_SUFFIXES = (".wants", ".requires", ".upholds")
MAX_UNIT_BYTES = 1 << 20


class UnitFile(BaseModel):
    name: str
    type: str  # service, socket, timer, ...
    path: str  # inside the target root
    state: str  # enabled, disabled, static, masked, alias, indirect, linked, bad
    description: str | None = None
    alias_of: str | None = None
    wanted_by: list[str] = []  # from [Install]
    enabled_in: list[str] = []  # targets/units whose .wants/.requires in /etc link it
    instances: list[str] = []  # enabled instances of a template
    exec_start: list[str] = []
    service_type: str | None = None
    user: str | None = None
    dropins: list[str] = []
    # From the running systemd (None: not asked, or systemd has not loaded the unit).
    load_state: str | None = None
    active_state: str | None = None
    sub_state: str | None = None


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """[Section] -> key -> values (repeated keys accumulate; '\\' continues a line)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


@dataclass
class _Entry:
    name: str
    rel: str  # relative path where it was found
    config: bool  # found in /etc
    link: str | None  # symlink target, if it is a symlink
    empty: bool
    dropins: list[str] = field(default_factory=list)


def _words(values: list[str]) -> list[str]:
    return [w for v in values for w in v.split()]


class UnitScanner:
    def __init__(self, target: TargetReader) -> None:
        self.target = target
        self.entries: dict[str, _Entry] = {}
        self.links: dict[str, list[str]] = {}  # unit name -> units whose wants/ links it
        self.config_symlinks: dict[str, str] = {}  # name in /etc -> link target

    def _dirs(self) -> list[tuple[str, bool]]:
        seen: set[str] = set()
        result = []
        for rel in CONFIG_DIRS + VENDOR_DIRS:
            try:
                real = self.target.resolve(rel)
            except OSError:
                continue
            if real is None or str(real) in seen:
                continue  # merged /usr: lib/systemd/system is usr/lib/systemd/system
            seen.add(str(real))
            result.append((rel, rel in CONFIG_DIRS))
        return result

    def scan(self) -> None:
        for rel, config in self._dirs():
            for name, st in self.target.iter_files(rel):
                path = f"{rel}/{name}"
                if name.endswith(LINK_DIR_SUFFIXES) and config:
                    owner = name.rsplit(".", 1)[0]
                    for link in self.target.listdir(path):
                        self.links.setdefault(link, []).append(owner)
                elif name.endswith(".d"):
                    unit = name[:-2]
                    confs = [f"{path}/{c}" for c in self.target.listdir(path)
                             if c.endswith(".conf")]
                    self.entries.setdefault(unit, _Entry(unit, "", False, None, False)) \
                        .dropins.extend(confs)
                elif name.endswith(UNIT_SUFFIXES):
                    self._add(name, path, config, st)

    def _add(self, name: str, path: str, config: bool, st: os.stat_result) -> None:
        link = self.target.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        if config and link is not None:
            self.config_symlinks[name] = link
        existing = self.entries.get(name)
        if existing is not None and existing.rel:
            return  # an earlier (higher-priority) directory already has it
        entry = _Entry(name, path, config, link, st.st_size == 0 and link is None)
        if existing is not None:
            entry.dropins = existing.dropins
        self.entries[name] = entry


def _template_of(name: str) -> str | None:
    prefix, at, rest = name.partition("@")
    if not at or not rest or rest.startswith("."):
        return None
    return f"{prefix}@{rest[rest.index('.'):]}" if "." in rest else None


def _last(values: list[str] | None) -> str | None:
    return values[-1] if values else None


def _unit(scanner: UnitScanner, entry: _Entry, install: dict[str, list[str]],
          sections: dict[str, dict[str, list[str]]], state: str) -> UnitFile:
    service = sections.get("Service", {})
    return UnitFile(
        name=entry.name, type=entry.name.rsplit(".", 1)[-1], path=entry.rel, state=state,
        description=_last(sections.get("Unit", {}).get("Description")),
        alias_of=os.path.basename(entry.link) if state == "alias" and entry.link else None,
        wanted_by=_words(install.get("WantedBy", [])),
        enabled_in=sorted(scanner.links.get(entry.name, [])),
        exec_start=service.get("ExecStart", []),
        service_type=_last(service.get("Type")), user=_last(service.get("User")),
        dropins=entry.dropins,
    )


def _link_state(scanner: UnitScanner, entry: _Entry) -> str | None:
    """masked / alias / linked, decided by the file itself (in any directory)."""
    if entry.link == "/dev/null" or (entry.config and entry.empty):
        return "masked"
    if entry.link is None:
        return None
    base = os.path.basename(entry.link)
    if base != entry.name and base in scanner.entries:
        return "alias"
    return "linked" if entry.config else None


def _instance_state(scanner: UnitScanner, entry: _Entry,
                    install: dict[str, list[str]]) -> tuple[str, list[str]] | None:
    if "@" not in entry.name or not entry.name.split("@", 1)[1].startswith("."):
        return None
    instances = sorted(n for n in scanner.links if _template_of(n) == entry.name)
    if not instances:
        return None
    default = (install.get("DefaultInstance") or [""])[-1]
    prefix, _, suffix = entry.name.partition("@")
    if default and f"{prefix}@{default}{suffix}" in instances:
        return "enabled", instances
    return "indirect", instances


def _state(scanner: UnitScanner, entry: _Entry,
           install: dict[str, list[str]]) -> tuple[str, list[str]]:
    """systemctl is-enabled, from files: (state, enabled template instances)."""
    by_link = _link_state(scanner, entry)
    if by_link is not None:
        return by_link, []
    aliases = _words(install.get("Alias", []))
    if entry.name in scanner.links or any(a in scanner.config_symlinks for a in aliases):
        return "enabled", []
    by_instance = _instance_state(scanner, entry, install)
    if by_instance is not None:
        return by_instance
    has_install = any(install.get(k) for k in ("WantedBy", "RequiredBy", "UpheldBy", "Alias"))
    if not has_install:
        return ("indirect" if install.get("Also") else "static"), []
    return "disabled", []


def collect_units(target: TargetReader) -> list[UnitFile]:
    scanner = UnitScanner(target)
    scanner.scan()
    units: list[UnitFile] = []
    for name in sorted(scanner.entries):
        entry = scanner.entries[name]
        if not entry.rel:
            continue  # a drop-in directory for a unit that has no file
        text = "" if entry.link == "/dev/null" else target.read_text(entry.rel, MAX_UNIT_BYTES)
        if text is None:
            units.append(UnitFile(name=name, type=name.rsplit(".", 1)[-1], path=entry.rel,
                                  state="bad"))
            continue
        sections = parse_unit(text)
        install = sections.get("Install", {})
        state, instances = _state(scanner, entry, install)
        unit = _unit(scanner, entry, install, sections, state)
        units.append(unit.model_copy(update={"instances": instances}))
    return units
