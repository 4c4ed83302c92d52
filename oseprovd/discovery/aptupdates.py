"""Pending security updates from apt's downloaded lists, without apt and without network.

Read from var/lib/apt/lists of the target: every Packages index (plain, .gz, .xz or
.lz4: Debian 12's apt stores them lz4-compressed), and the InRelease/Release file next to
it, which names the suite. A package has a pending security update when the version apt
would install (its candidate: the highest version of that name and architecture in any
list, with default pins) is newer than the installed one and is offered by a security
suite (suite or codename ending in '-security'), which is what `apt list --upgradable`
shows as '.../...-security'.

Why not python-apt: it works on one apt configuration (the host's) and builds apt's whole
cache; here the target may be a mounted image and we need three fields per package (and
its TagFile detects compression only from a file name, not from an open descriptor).
lz4 has no module in the standard library: the `lz4` PyPI module (its frame format is
what apt writes) decompresses when installed, else the `lz4` tool (Debian package lz4),
fed through a pipe. Either way the bytes come from the root-clamped reader, so nothing in
the target is opened by path by another program.
"""

from __future__ import annotations

import gzip
import importlib
import lzma
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from types import ModuleType

from pydantic import BaseModel

from oseprovd.discovery.fsread import TargetReader

LISTS = "var/lib/apt/lists"
MAX_INDEX_BYTES = 128 << 20  # a compressed Packages index; bookworm main is ~9 MiB lz4
MAX_PLAIN_BYTES = 512 << 20
LZ4_TIMEOUT = 30.0
_SUFFIXES = ("", ".gz", ".xz", ".lz4")
_FIELDS = re.compile(rb"^(Package|Version|Architecture): *(\S+)", re.M)
_CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"}


class SecurityUpdate(BaseModel):
    name: str
    architecture: str
    installed_version: str
    candidate_version: str
    suites: list[str]  # security suites offering the candidate, e.g. bookworm-security


class PendingUpdates(BaseModel):
    checked: bool = False  # False: no readable apt lists in the target
    lists: int = 0  # Packages indexes read
    unreadable: list[str] = []  # indexes that could not be decompressed (no lz4 tool)
    updates: list[SecurityUpdate] = []


# --- Debian version ordering (deb-version(7), dpkg's verrevcmp) -------------------------

def _order(ch: str) -> int:
    if ch == "~":
        return -1
    if ch.isascii() and ch.isalpha():
        return ord(ch)
    return ord(ch) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, sep, rest = version.partition(":")
    if not sep:
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return int(epoch) if epoch.isdigit() else 0, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """<0, 0, >0 as dpkg --compare-versions orders a and b."""
    ea, ua, ra = _split(a)
    eb, ub, rb = _split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


# --- apt's lists ------------------------------------------------------------------------

@dataclass
class _Release:
    suite: str = ""
    codename: str = ""

    @property
    def security(self) -> bool:
        return self.suite.endswith("-security") or self.codename.endswith("-security")

    @property
    def label(self) -> str:
        return self.codename or self.suite


def parse_release(text: str) -> _Release:
    """Suite and Codename of a Release or (clearsigned) InRelease file."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Suite", "Codename") and key not in found:
            found[key] = value.strip()
    return _Release(suite=found.get("Suite", ""), codename=found.get("Codename", ""))


def _lz4_module() -> ModuleType | None:
    # Optional (a venv may lack it): imported by name, so type checking needs no stubs.
    try:
        return importlib.import_module("lz4.frame")
    except ImportError:
        return None


def _lz4_with_module(module: ModuleType, data: bytes) -> bytes | None:
    decompressor = module.LZ4FrameDecompressor()
    try:
        plain = decompressor.decompress(data, max_length=MAX_PLAIN_BYTES)
    except RuntimeError:  # what lz4.frame raises for a corrupt frame
        return None
    # Not at the frame's end: cut short, or larger than we accept.
    return plain if isinstance(plain, bytes) and decompressor.eof else None


def decompress(name: str, data: bytes, use_module: bool = True) -> bytes | None:
    """The plain index; None when it can't be decompressed here. `use_module=False`
    skips the lz4 module (the tool's path, for tests)."""
    try:
        if name.endswith(".gz"):
            return gzip.decompress(data)
        if name.endswith(".xz"):
            return lzma.decompress(data)
    except (OSError, lzma.LZMAError, EOFError):
        return None
    if not name.endswith(".lz4"):
        return data
    module = _lz4_module() if use_module else None
    if module is not None:
        return _lz4_with_module(module, data)
    tool = shutil.which("lz4", path=_CLEAN_ENV["PATH"])
    if tool is None:
        return None
    try:
        done = subprocess.run([tool, "-d", "-c", "-"], input=data, capture_output=True,
                              timeout=LZ4_TIMEOUT, env=_CLEAN_ENV, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or len(done.stdout) > MAX_PLAIN_BYTES:
        return None
    return done.stdout


def index_versions(data: bytes, wanted: set[str]) -> list[tuple[str, str, str]]:
    """(name, architecture, version) of the stanzas of a Packages index whose name is in
    `wanted`. Package is the first field of every stanza apt writes."""
    found: list[tuple[str, str, str]] = []
    name = version = arch = ""

    def flush() -> None:
        if name in wanted and version and arch:
            found.append((name, arch, version))

    for match in _FIELDS.finditer(data):
        key, value = match.group(1), match.group(2).decode("utf-8", "replace")
        if key == b"Package":
            flush()
            name, version, arch = value, "", ""
        elif key == b"Version":
            version = version or value
        else:
            arch = arch or value
    flush()
    return found


@dataclass
class _Offers:
    # (name, arch) -> version -> labels of the suites offering it ('' for non-security)
    by_package: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)


def pending_security_updates(target: TargetReader,
                             installed: list[tuple[str, str, str]]) -> PendingUpdates:
    """`installed`: (name, architecture, version) of the installed packages."""
    names = target.listdir(LISTS)
    releases = {n.removesuffix("InRelease").removesuffix("Release"): n for n in names
                if n.endswith("_InRelease") or n.endswith("_Release")}
    indexes = [n for n in names
               if any(n.endswith("_Packages" + s) for s in _SUFFIXES)]
    if not indexes:
        return PendingUpdates()
    wanted = {name for name, _, _ in installed}
    offers = _Offers()
    unreadable: list[str] = []
    release_cache: dict[str, _Release] = {}
    for index in sorted(indexes):
        prefix = max((p for p in releases if index.startswith(p)), key=len, default=None)
        release = _Release()
        if prefix is not None:
            if prefix not in release_cache:
                release_cache[prefix] = parse_release(
                    target.read_text(f"{LISTS}/{releases[prefix]}", 4 << 20) or "")
            release = release_cache[prefix]
        raw = target.read_bytes(f"{LISTS}/{index}", MAX_INDEX_BYTES)
        plain = decompress(index, raw) if raw is not None else None
        if plain is None:
            unreadable.append(index)
            continue
        label = release.label if release.security else ""
        for name, arch, version in index_versions(plain, wanted):
            offers.by_package.setdefault((name, arch), {}).setdefault(version, set()).add(label)
    updates = []
    for name, arch, version in installed:
        offered = offers.by_package.get((name, arch))
        if not offered:
            continue
        candidate = version
        for other in offered:
            if compare_versions(other, candidate) > 0:
                candidate = other
        if candidate == version:
            continue
        suites = sorted(label for label in offered[candidate] if label)
        if suites:
            updates.append(SecurityUpdate(name=name, architecture=arch,
                                          installed_version=version,
                                          candidate_version=candidate, suites=suites))
    updates.sort(key=lambda u: (u.name, u.architecture))
    return PendingUpdates(checked=True, lists=len(indexes) - len(unreadable),
                          unreadable=unreadable, updates=updates)
