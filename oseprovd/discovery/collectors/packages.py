"""Installed packages from dpkg's status file, parsed directly (fast: no subprocess);
rpm, flatpak and snap packages when those managers are present (otherpkgs.py).

Manual/auto comes from apt's extended_states (Auto-Installed: 1). Only the fields we
report are kept, so a large status file (tens of MB on a desktop) costs little memory.
"""

from __future__ import annotations

from pydantic import BaseModel

from oseprovd.discovery.collectors import otherpkgs
from oseprovd.discovery.collectors.otherpkgs import OtherPackages
from oseprovd.discovery.fsread import TargetReader, target_reader
from oseprovd.discovery.roots import SystemRoots

STATUS_FILE = "var/lib/dpkg/status"
EXTENDED_STATES = "var/lib/apt/extended_states"
MAX_STATUS_BYTES = 256 << 20

_WANTED = frozenset({"Package", "Version", "Architecture", "Section", "Priority",
                     "Installed-Size", "Status", "Source", "Multi-Arch", "Essential"})


class Package(BaseModel):
    name: str
    version: str | None = None
    architecture: str | None = None
    section: str | None = None
    priority: str | None = None
    installed_size_kib: int | None = None
    want: str | None = None  # install, hold, deinstall, purge, unknown
    flag: str | None = None  # ok, reinstreq
    state: str | None = None  # installed, config-files, half-installed, unpacked, ...
    source: str | None = None
    essential: bool = False
    auto_installed: bool | None = None  # None: apt has no record (e.g. installed by dpkg -i)


class PackagesInfo(BaseModel):
    manager: str | None = None  # dpkg
    installed: int = 0  # state == installed
    packages: list[Package] = []
    other_managers: OtherPackages = OtherPackages()  # rpm, flatpak, snap


def parse_control(data: bytes, wanted: frozenset[str] | None = None) -> list[dict[str, str]]:
    """deb822 paragraphs; continuation lines are skipped (we need no multi-line field)."""
    result: list[dict[str, str]] = []
    for block in data.decode("utf-8", "replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if not line or line[0] in " \t#":
                continue
            key, sep, value = line.partition(":")
            if sep and (wanted is None or key in wanted):
                fields[key] = value.strip()
        if fields:
            result.append(fields)
    return result


def _auto_flags(target: TargetReader) -> dict[tuple[str, str], bool]:
    data = target.read_bytes(EXTENDED_STATES, MAX_STATUS_BYTES) or b""
    flags: dict[tuple[str, str], bool] = {}
    for para in parse_control(data, frozenset({"Package", "Architecture", "Auto-Installed"})):
        if "Package" in para:
            key = (para["Package"], para.get("Architecture", ""))
            flags[key] = para.get("Auto-Installed") == "1"
    return flags


def _package(para: dict[str, str], auto: dict[tuple[str, str], bool], native: str) -> Package:
    name = para["Package"]
    arch = para.get("Architecture")
    status: list[str | None] = [*para.get("Status", "").split(), None, None, None]
    want, flag, state = status[:3]
    size = para.get("Installed-Size", "")
    # apt records arch:all packages under the native architecture.
    lookup_arch = native if arch == "all" else (arch or "")
    is_auto = auto.get((name, lookup_arch))
    if is_auto is None and (name, arch or "") in auto:
        is_auto = auto[(name, arch or "")]
    source = para.get("Source")
    return Package(
        name=name, version=para.get("Version"), architecture=arch,
        section=para.get("Section"), priority=para.get("Priority"),
        installed_size_kib=int(size) if size.isdigit() else None,
        want=want, flag=flag, state=state,
        source=source.split()[0] if source else None,
        essential=para.get("Essential") == "yes",
        auto_installed=is_auto if is_auto is not None else (False if auto else None),
    )


def native_arch(target: TargetReader, paragraphs: list[dict[str, str]]) -> str:
    """dpkg's native architecture: the first line of var/lib/dpkg/arch on multiarch
    systems, else the architecture of dpkg itself (it is never arch:all)."""
    lines = (target.read_text("var/lib/dpkg/arch", 4096) or "").split()
    if lines:
        return lines[0]
    return next((p.get("Architecture", "") for p in paragraphs if p["Package"] == "dpkg"), "")


def dpkg_info(target: TargetReader) -> PackagesInfo:
    """dpkg's packages only (what the security audit compares with apt's lists)."""
    data = target.read_bytes(STATUS_FILE, MAX_STATUS_BYTES)
    if data is None:
        return PackagesInfo()
    paragraphs = [p for p in parse_control(data, _WANTED) if "Package" in p]
    auto = _auto_flags(target)
    native = native_arch(target, paragraphs)
    packages = [_package(p, auto, native) for p in paragraphs]
    packages.sort(key=lambda p: (p.name, p.architecture or ""))
    return PackagesInfo(manager="dpkg", packages=packages,
                        installed=sum(1 for p in packages if p.state == "installed"))


def collect(roots: SystemRoots) -> PackagesInfo:
    target = target_reader(roots)
    return dpkg_info(target).model_copy(
        update={"other_managers": otherpkgs.collect(roots, target)})


DEP_FIELDS = ("Pre-Depends", "Depends", "Recommends", "Suggests", "Conflicts", "Breaks",
              "Replaces", "Provides")


class Dependency(BaseModel):
    name: str
    arch: str | None = None  # ':any', ':native' qualifiers
    relation: str | None = None  # <<, <=, =, >=, >>
    version: str | None = None


class PackageRelations(BaseModel):
    name: str
    architecture: str | None = None
    version: str | None = None
    # field -> list of alternatives groups ('a | b' is one group of two)
    relations: dict[str, list[list[Dependency]]] = {}
    raw: dict[str, str] = {}


def parse_relation(text: str) -> list[list[Dependency]]:
    """'libc6 (>= 2.34), perl:any | perl-base' -> [[libc6 >= 2.34], [perl:any, perl-base]]."""
    groups: list[list[Dependency]] = []
    for group in text.split(","):
        alternatives: list[Dependency] = []
        for raw in group.split("|"):
            alt = raw.strip()
            if not alt:
                continue
            head, _, constraint = alt.partition("(")
            head = head.split("[")[0].split("<")[0].strip()  # arch lists, build profiles
            name, _, arch = head.partition(":")
            relation = version = None
            if constraint:
                body = constraint.rstrip(")").strip()
                for op in ("<<", "<=", ">=", ">>", "=", "<", ">"):
                    if body.startswith(op):
                        relation, version = op, body[len(op):].strip()
                        break
            alternatives.append(Dependency(name=name, arch=arch or None, relation=relation,
                                           version=version))
        if alternatives:
            groups.append(alternatives)
    return groups


def package_relations(roots: SystemRoots, name: str,
                      architecture: str | None = None) -> list[PackageRelations]:
    """Dependencies of an installed (or known) package, from dpkg's status file."""
    target = target_reader(roots)
    data = target.read_bytes(STATUS_FILE, MAX_STATUS_BYTES) or b""
    found = []
    wanted = frozenset({"Package", "Architecture", "Version", *DEP_FIELDS})
    for para in parse_control_full(data, wanted):
        if para.get("Package") != name:
            continue
        if architecture is not None and para.get("Architecture") != architecture:
            continue
        raw = {f: para[f] for f in DEP_FIELDS if f in para}
        found.append(PackageRelations(
            name=name, architecture=para.get("Architecture"), version=para.get("Version"),
            relations={f: parse_relation(v) for f, v in raw.items()}, raw=raw))
    return found


def parse_control_full(data: bytes, wanted: frozenset[str]) -> list[dict[str, str]]:
    """Like parse_control, but folds continuation lines into their field (relations
    may wrap)."""
    result: list[dict[str, str]] = []
    for block in data.decode("utf-8", "replace").split("\n\n"):
        fields: dict[str, str] = {}
        last: str | None = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t"):
                if last is not None:
                    fields[last] += " " + line.strip()
                continue
            key, sep, value = line.partition(":")
            last = key if sep and key in wanted else None
            if last is not None:
                fields[key] = value.strip()
        if fields:
            result.append(fields)
    return result
