"""Applications (desktop entries and the packages that own them) and language runtimes
with their versions."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from oseprovd.discovery import probe
from oseprovd.discovery.collectors.containers import installed_versions
from oseprovd.discovery.fsread import TargetReader, target_reader
from oseprovd.discovery.roots import SystemRoots

APP_DIRS = (("usr/share/applications", "dpkg"), ("usr/local/share/applications", "local"),
            ("var/lib/flatpak/exports/share/applications", "flatpak"),
            ("var/lib/snapd/desktop/applications", "snap"))


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    binaries: tuple[str, ...]
    version_args: tuple[str, ...]
    packages: tuple[str, ...]


RUNTIMES: tuple[RuntimeSpec, ...] = (
    RuntimeSpec("python3", ("/usr/bin/python3", "/usr/local/bin/python3"), ("--version",),
                ("python3", "python3-minimal")),
    RuntimeSpec("perl", ("/usr/bin/perl",), ("-e", "print $^V"), ("perl", "perl-base")),
    RuntimeSpec("ruby", ("/usr/bin/ruby", "/usr/local/bin/ruby"), ("--version",), ("ruby",)),
    RuntimeSpec("node", ("/usr/bin/node", "/usr/local/bin/node"), ("--version",),
                ("nodejs",)),
    RuntimeSpec("java", ("/usr/bin/java",), ("-version",),
                ("default-jre-headless", "openjdk-17-jre-headless", "openjdk-21-jre-headless")),
    RuntimeSpec("go", ("/usr/bin/go", "/usr/local/go/bin/go"), ("version",), ("golang-go",)),
    RuntimeSpec("php", ("/usr/bin/php",), ("--version",), ("php-cli", "php8.2-cli")),
    RuntimeSpec("rustc", ("/usr/bin/rustc", "/usr/local/bin/rustc"), ("--version",),
                ("rustc",)),
    RuntimeSpec("lua", ("/usr/bin/lua",), ("-v",), ("lua5.4", "lua5.3")),
    RuntimeSpec("dotnet", ("/usr/bin/dotnet", "/usr/share/dotnet/dotnet"), ("--version",),
                ("dotnet-runtime-8.0",)),
)


class Application(BaseModel):
    id: str  # desktop file id, e.g. org.gnome.Terminal.desktop
    name: str | None = None
    generic_name: str | None = None
    exec: str | None = None
    categories: list[str] = []
    terminal: bool = False
    hidden: bool = False  # NoDisplay or Hidden
    source: str  # dpkg, local, flatpak, snap
    package: str | None = None  # owning dpkg package


class Runtime(BaseModel):
    name: str
    binary: str | None = None
    version: str | None = None
    version_source: str | None = None  # binary or package
    package: str | None = None


class ApplicationsInfo(BaseModel):
    applications: list[Application] = []
    runtimes: list[Runtime] = []


def parse_desktop_entry(text: str) -> dict[str, str]:
    """The unlocalized keys of the [Desktop Entry] group."""
    values: dict[str, str] = {}
    active = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            active = line == "[Desktop Entry]"
        elif active and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            if "[" not in key:
                values.setdefault(key.strip(), value.strip())
    return values


# Reading every dpkg file list is most of this collector's time; dpkg rewrites its status
# file and the info directory on every install or removal, so their identity keys a
# remembered answer (per target root and set of paths).
_OWNERS: dict[tuple[object, ...], dict[str, str]] = {}


def _dpkg_identity(target: TargetReader) -> tuple[object, ...] | None:
    status, info = target.lstat("var/lib/dpkg/status"), target.lstat("var/lib/dpkg/info")
    if status is None or info is None:
        return None
    return (status.st_ino, status.st_size, status.st_mtime_ns, info.st_ino, info.st_mtime_ns)


def owners(target: TargetReader, paths: set[str]) -> dict[str, str]:
    """path -> owning dpkg package, for the given paths (merged-/usr aware)."""
    identity = _dpkg_identity(target)
    key = (str(target.root), identity, frozenset(paths))
    if identity is not None and key in _OWNERS:
        return dict(_OWNERS[key])
    found = _read_owners(target, paths)
    if identity is not None:
        if len(_OWNERS) >= 16:
            _OWNERS.clear()
        _OWNERS[key] = dict(found)
    return found


def _read_owners(target: TargetReader, paths: set[str]) -> dict[str, str]:
    lookup = {p: p for p in paths}
    lookup.update({"/" + p[len("/usr/"):]: p for p in paths if p.startswith("/usr/")})
    found: dict[str, str] = {}
    for name in target.listdir("var/lib/dpkg/info"):
        if not name.endswith(".list"):
            continue
        package = name[:-len(".list")].split(":")[0]
        for line in (target.read_text(f"var/lib/dpkg/info/{name}", 16 << 20) or "").splitlines():
            if line in lookup:
                found.setdefault(lookup[line], package)
    return found


def applications(target: TargetReader) -> list[Application]:
    entries: list[tuple[str, str, dict[str, str]]] = []
    for directory, source in APP_DIRS:
        for name in target.listdir(directory):
            if name.endswith(".desktop"):
                values = parse_desktop_entry(target.read_text(f"{directory}/{name}", 1 << 20)
                                             or "")
                if values.get("Type", "Application") == "Application":
                    entries.append((f"/{directory}/{name}", source, values))
    owned = owners(target, {path for path, source, _ in entries if source == "dpkg"})
    return [Application(
        id=path.rsplit("/", 1)[1], name=v.get("Name"), generic_name=v.get("GenericName"),
        exec=v.get("Exec"), categories=[c for c in v.get("Categories", "").split(";") if c],
        terminal=v.get("Terminal", "").lower() == "true",
        hidden="true" in (v.get("NoDisplay", "").lower(), v.get("Hidden", "").lower()),
        source=source, package=owned.get(path)) for path, source, v in entries]


def runtimes(roots: SystemRoots, target: TargetReader) -> list[Runtime]:
    installed = installed_versions(roots)
    found = []
    for spec in RUNTIMES:
        binary = probe.first_present(target, spec.binaries)
        package = next((p for p in spec.packages if p in installed), None)
        if binary is None and package is None:
            continue
        version = probe.program_version(roots, binary, spec.version_args) if binary else None
        source = "binary" if version else None
        if version is None and package is not None:
            version, source = installed[package], "package"
        found.append(Runtime(name=spec.name, binary=binary, version=version,
                             version_source=source, package=package))
    return found


def collect(roots: SystemRoots) -> ApplicationsInfo:
    target = target_reader(roots)
    return ApplicationsInfo(applications=applications(target),
                            runtimes=runtimes(roots, target))
