"""dpkg's own database on the target: who owns a path, conffiles and their md5sums.

Package facts (name, version, priority, manual/auto) come from the discovery collector
(`discovery.collectors.packages`), which parses the status file and extended_states;
here only what it doesn't keep: the `.list` files (ownership) and `Conffiles` fields.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from oseprovd.discovery.collectors import packages as dpkg_packages
from oseprovd.discovery.roots import SystemRoots
from oseprovd.reset.models import Conffile
from oseprovd.system.rootfs import TargetRoot

INFO_DIR = "var/lib/dpkg/info"
MAX_LIST_BYTES = 64 << 20
# Debian policy 5.6.1: lowercase letters, digits, + - . ; at least two, starting alnum.
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
ARCH_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
HIGH_PRIORITIES = frozenset({"required", "important", "standard"})


def installed_packages(root: TargetRoot) -> list[dpkg_packages.Package]:
    info = dpkg_packages.collect(SystemRoots(target=root.path))
    return [p for p in info.packages if p.state == "installed"]


def is_high_priority(pkg: dpkg_packages.Package) -> bool:
    return pkg.essential or (pkg.priority or "") in HIGH_PRIORITIES


class Ownership:
    """Paths (relative, no leading "/") -> owning packages, from var/lib/dpkg/info/*.list.

    Only paths under `prefixes` are kept (a desktop has ~10^6 listed paths; a reset
    rule looks at a few trees)."""

    def __init__(self, owners: dict[str, tuple[str, ...]]) -> None:
        self.owners = owners

    @classmethod
    def load(cls, root: TargetRoot, prefixes: Iterable[str] = ("",)) -> Ownership:
        wanted = {os.fsencode(p.strip("/")) for p in prefixes}
        everything = b"" in wanted
        ancestors = {b"/".join(w.split(b"/")[:i]) for w in wanted
                     for i in range(1, w.count(b"/") + 1)}
        # a cheap first test on the first two components (most listed paths are
        # under /usr/share and fail it), then the exact prefix test
        heads = {b"/".join(w.split(b"/")[:2]) for w in wanted}
        firsts = {w for w in wanted if b"/" not in w}
        owners: dict[str, list[str]] = {}
        try:
            fd = root.open_dir(INFO_DIR)
        except (FileNotFoundError, NotADirectoryError):
            return cls({})
        try:
            names = sorted(n for n in os.listdir(fd) if n.endswith(".list"))
        finally:
            os.close(fd)
        for name in names:
            package = name[: -len(".list")].split(":")[0]
            try:
                data = root.read_bytes(f"{INFO_DIR}/{name}", MAX_LIST_BYTES)
            except (FileNotFoundError, OSError):
                continue
            for raw in data.split(b"\n"):
                path = raw.strip(b"/")
                if not path or path == b".":
                    continue
                if not (everything or path in wanted or path in ancestors):
                    i = path.find(b"/")
                    j = path.find(b"/", i + 1) if i >= 0 else -1
                    head = path[:j] if j >= 0 else path
                    if head not in heads and (i < 0 or path[:i] not in firsts):
                        continue
                    if not any(path.startswith(w + b"/") for w in wanted):
                        continue
                owners.setdefault(os.fsdecode(path), []).append(package)
        return cls({k: tuple(v) for k, v in owners.items()})

    def owner(self, rel: str) -> tuple[str, ...]:
        return self.owners.get(rel, ())


def parse_conffiles(status: bytes) -> list[Conffile]:
    """Every conffile with the md5sum dpkg recorded for it (status `Conffiles:`)."""
    out: list[Conffile] = []
    wanted = frozenset({"Package", "Status", "Conffiles"})
    for para in dpkg_packages.parse_control_full(status, wanted):
        if "Conffiles" not in para or "Package" not in para:
            continue
        state = para.get("Status", "").split()[2:]
        # config-files state keeps conffiles too: they are still dpkg's
        if "installed" not in state and "config-files" not in state:
            continue
        tokens = para["Conffiles"].split()
        i = 0
        while i < len(tokens):
            path = tokens[i]
            if not path.startswith("/") or i + 1 >= len(tokens):
                i += 1
                continue
            md5 = tokens[i + 1]
            i += 2
            flags = []
            while i < len(tokens) and not tokens[i].startswith("/"):
                flags.append(tokens[i])
                i += 1
            out.append(Conffile(package=para["Package"], path=path, md5=md5,
                                obsolete="obsolete" in flags))
    out.sort(key=lambda c: (c.path, c.package))
    return out


def read_status(root: TargetRoot) -> bytes:
    try:
        return root.read_bytes(dpkg_packages.STATUS_FILE, dpkg_packages.MAX_STATUS_BYTES)
    except FileNotFoundError:
        return b""
