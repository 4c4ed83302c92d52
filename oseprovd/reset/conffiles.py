"""deep: modified conffiles back to the package's pristine version.

A conffile is modified when its md5sum differs from the one dpkg recorded (status
`Conffiles:`). The pristine bytes come from the package's .deb in apt's cache
(`dpkg-deb --fsys-tarfile`, read as a tar stream, checked against dpkg's md5sum); a
package whose exact .deb isn't cached is listed, not restored (no download here).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile

from pydantic import BaseModel, ConfigDict

from oseprovd.errors import OseError
from oseprovd.reset import dpkgdb
from oseprovd.system.rootfs import TargetRoot

ARCHIVES = "var/cache/apt/archives"
MAX_CONFFILE = 16 << 20


class ConffileRestore(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str  # relative to the root
    package: str
    md5: str  # dpkg's: what the pristine file hashes to
    deb: str  # relative path of the .deb in apt's cache ("" = not cached)


def _deb_name(name: str, version: str, arch: str) -> str:
    # apt's archive names escape the epoch's ':' as %3a
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def modified(root: TargetRoot,
             missing_too: frozenset[str] = frozenset()) -> list[ConffileRestore]:
    """Installed packages' conffiles whose bytes differ from dpkg's md5sum; for the
    packages in `missing_too` (nuclear: apt and dpkg) a deleted conffile too."""
    pkgs = {p.name: p for p in dpkgdb.installed_packages(root)}
    out = []
    for c in dpkgdb.parse_conffiles(dpkgdb.read_status(root)):
        p = pkgs.get(c.package)
        if p is None or c.obsolete or c.md5 in ("newconffile", ""):
            continue
        rel = root.resolve_rel(c.path)
        try:
            data = root.read_bytes(rel, MAX_CONFFILE)
        except FileNotFoundError:
            if c.package not in missing_too:
                continue  # removed by the admin: dpkg keeps it removed too
            data = None
        except (OseError, OSError):
            continue
        if data is not None and hashlib.md5(data, usedforsecurity=False).hexdigest() == c.md5:
            continue
        deb = f"{ARCHIVES}/{_deb_name(p.name, p.version or '', p.architecture or '')}"
        st = root.lstat(deb)
        out.append(ConffileRestore(path=rel, package=c.package, md5=c.md5,
                                   deb=deb if st is not None else ""))
    return out


def is_pristine(root: TargetRoot, item: ConffileRestore) -> bool:
    try:
        data = root.read_bytes(item.path, MAX_CONFFILE)
    except (FileNotFoundError, OseError, OSError):
        return False
    return hashlib.md5(data, usedforsecurity=False).hexdigest() == item.md5


def pristine(root: TargetRoot, item: ConffileRestore,
             dpkg_deb: str = "/usr/bin/dpkg-deb") -> tuple[bytes, int, int, int]:
    """(bytes, mode, uid, gid) of the conffile as the .deb ships it, md5-checked."""
    deb = root.host_path(item.deb)
    try:
        r = subprocess.run([dpkg_deb, "--fsys-tarfile", "--", str(deb)],
                           capture_output=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OseError(f"dpkg-deb could not run: {exc}") from None
    if r.returncode != 0:
        raise OseError(f"dpkg-deb failed on {item.deb}: {r.stderr.decode()[-300:]}")
    want = {f"./{item.path}", item.path}
    with tarfile.open(fileobj=io.BytesIO(r.stdout), mode="r:") as tar:
        for member in tar:
            if member.name in want and member.isfile():
                f = tar.extractfile(member)
                data = f.read(MAX_CONFFILE + 1) if f is not None else b""
                if hashlib.md5(data, usedforsecurity=False).hexdigest() != item.md5:
                    raise OseError(f"{item.deb}: /{item.path} does not match dpkg's md5sum")
                return data, member.mode & 0o7777, member.uid, member.gid
    raise OseError(f"{item.deb} has no /{item.path}")


def restore(root: TargetRoot, item: ConffileRestore, data: bytes, mode: int, uid: int,
            gid: int) -> None:
    root.atomic_write(item.path, data, mode=mode, uid=uid, gid=gid)
