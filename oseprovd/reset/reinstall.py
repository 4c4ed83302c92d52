"""nuclear: baseline packages removed since are installed again from local .debs.

The .deb must be the baseline's exact version and be at hand under the root: apt's
cache (`var/cache/apt/archives/NAME_VERSION_ARCH.deb`, epoch's ':' as `%3a`) — no
download. Its control fields are checked (`dpkg-deb --field`) so a file merely named
like the package is not installed. Without one the plan lists the package with
`deb=""` and Execute reports it in `packages_not_installed`.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile

from oseprovd.errors import OseError
from oseprovd.reset.conffiles import ARCHIVES
from oseprovd.system.rootfs import TargetRoot

DPKG_DEB = "/usr/bin/dpkg-deb"


def deb_name(name: str, version: str, arch: str) -> str:
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def _run(argv: list[str]) -> bytes:
    try:
        r = subprocess.run(argv, capture_output=True, timeout=300, check=False,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OseError(f"dpkg-deb could not run: {exc}") from None
    if r.returncode != 0:
        raise OseError(f"dpkg-deb failed: {r.stderr.decode(errors='replace')[-300:]}")
    return r.stdout


def find_deb(root: TargetRoot, name: str, version: str, arch: str) -> str:
    """The .deb of exactly (name, version, arch) under the root, or ""."""
    rel = f"{ARCHIVES}/{deb_name(name, version, arch)}"
    try:
        st = root.lstat(rel)
    except OseError:
        return ""
    if st is None or not stat.S_ISREG(st.st_mode):
        return ""
    try:
        fields = _run([DPKG_DEB, "--field", "--", str(root.host_path(rel)),
                       "Package", "Version", "Architecture"]).decode(errors="replace")
    except OseError:
        return ""
    got = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
    if (got.get("Package"), got.get("Version"), got.get("Architecture")) != (
            name, version, arch):
        return ""
    return rel


def deb_files(root: TargetRoot, rel: str) -> list[str]:
    """Paths (relative) the .deb unpacks that a rollback must take away again: every
    non-directory, and the directories that don't exist yet. Saved `created=True`
    in the rollback point."""
    import io
    data = _run([DPKG_DEB, "--fsys-tarfile", "--", str(root.host_path(rel))])
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            name = member.name.removeprefix("./").lstrip("/")
            p = os.path.normpath(name) if name else ""
            if not p or p == "." or p.startswith(".."):
                continue
            if member.isdir():
                try:
                    if root.lstat(p) is not None:
                        continue
                except OseError:
                    continue  # through a symlink (merged /usr): not ours to save
            out.append(p)
    return sorted(out)
