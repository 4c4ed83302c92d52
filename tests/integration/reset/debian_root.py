"""A real Debian 12 minbase root, made with debootstrap once and cached.

Cache (CACHE_DIR, default /var/cache/ose-tests; env OSE_TEST_CACHE):
  bookworm-minbase.tgz       `debootstrap --make-tarball` (the downloaded .debs)
  bookworm-minbase-root.tar  the root after `debootstrap --unpack-tarball`
A test gets a fresh copy of the root tar (a few seconds); the first run downloads from
the mirror the machine's apt sources name (measured here: 18 s download, 22 s install).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from tests.harness.components import missing, require, require_root

CACHE_DIR = Path(os.environ.get("OSE_TEST_CACHE", "/var/cache/ose-tests"))
SUITE = "bookworm"
TARBALL = CACHE_DIR / f"{SUITE}-minbase.tgz"
ROOT_TAR = CACHE_DIR / f"{SUITE}-minbase-root.tar"


def apt_mirror() -> str:
    """The first Debian mirror of the machine's apt sources (deb822 or one-line)."""
    files = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        files += sorted(d.iterdir())
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            if "security" not in m.group(1):
                return m.group(1)
        for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            if "security" not in m.group(1):
                return m.group(1)
    return "http://deb.debian.org/debian"


def _log(msg: str) -> None:
    print(f"[debian_root] {msg}", flush=True)


# debootstrap is a shell script that rejects "--"; its positional arguments are ours
# (a fixed suite, a path we made, the mirror from apt's sources), never a caller's.


def ensure_root_tar() -> Path:
    require_root("debootstrap")
    debootstrap = require("debootstrap", "a real Debian root for reset tests")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    if ROOT_TAR.exists():
        return ROOT_TAR
    work = CACHE_DIR / "work"
    subprocess.run(["rm", "-rf", "--", str(work)], check=True)
    if not TARBALL.exists():
        t = time.monotonic()
        part = TARBALL.with_suffix(".part")
        r = subprocess.run([debootstrap, "--variant=minbase", f"--make-tarball={part}",
                            SUITE, str(work), apt_mirror()], capture_output=True,
                           text=True, check=False)
        if r.returncode != 0:
            missing(f"debootstrap --make-tarball failed (no mirror?): {r.stderr[-500:]}")
        part.rename(TARBALL)
        _log(f"tarball downloaded in {time.monotonic() - t:.1f} s")
    t = time.monotonic()
    subprocess.run(["rm", "-rf", "--", str(work)], check=True)
    r = subprocess.run([debootstrap, "--variant=minbase", f"--unpack-tarball={TARBALL}",
                        SUITE, str(work), apt_mirror()], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        missing(f"debootstrap --unpack-tarball failed: {r.stderr[-500:]}")
    _log(f"root installed in {time.monotonic() - t:.1f} s")
    part = ROOT_TAR.with_suffix(".part")
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--acls", "-C", str(work),
                    "-cf", str(part), "."], check=True)
    part.rename(ROOT_TAR)
    subprocess.run(["rm", "-rf", "--", str(work)], check=True)
    return ROOT_TAR


def unpack_root(dest: Path) -> Path:
    tar = ensure_root_tar()
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--acls", "-C", str(dest),
                    "-xf", str(tar)], check=True)
    return dest


def build_deb(tmp: Path, name: str, files: dict[str, str], depends: str = "",
              conffiles: tuple[str, ...] = ()) -> Path:
    """A tiny .deb (dpkg-deb -b) with `files` (absolute path -> content)."""
    pkg = tmp / f"{name}-pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: OSE tests "
        f"<tests@ose.invalid>\nPriority: optional\nDescription: test package\n"
        + (f"Depends: {depends}\n" if depends else ""))
    for path, content in files.items():
        p = pkg / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    if conffiles:
        (pkg / "DEBIAN/conffiles").write_text("".join(f"{c}\n" for c in conffiles))
    deb = tmp / f"{name}_1.0_all.deb"
    subprocess.run([require("dpkg-deb", "building a test package"), "--root-owner-group",
                    "-b", str(pkg), str(deb)], check=True, capture_output=True)
    return deb


def dpkg_install(root: Path, deb: Path) -> None:
    """dpkg on the target (--root), the way a user's `dpkg -i` would record it."""
    subprocess.run([require("dpkg", "installing into the target"), f"--root={root}",
                    "--force-script-chrootless", "--force-not-root", "-i", "--", str(deb)],
                   check=True, capture_output=True)
