"""OS and packages: compared with dpkg-query, apt-mark and Python's own os-release parser."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from oseprovd.discovery.collectors import osinfo, packages
from oseprovd.discovery.roots import SystemRoots
from tests.unit.discovery.helpers import require_tool, run_tool, steady, symlink, write

QUERY_FORMAT = "${Package}\t${Version}\t${Architecture}\n"


def _dpkg_truth(admindir: str | None = None) -> set[tuple[str, str, str]]:
    argv = ["dpkg-query"] + ([f"--admindir={admindir}"] if admindir else [])
    out = run_tool(*argv, "-W", "-f", QUERY_FORMAT)
    return {tuple(line.split("\t")) for line in out.splitlines()}  # type: ignore[misc]


def _ours(info: packages.PackagesInfo) -> set[tuple[str, str, str]]:
    return {(p.name, p.version or "", p.architecture or "") for p in info.packages
            if p.state != "not-installed"}


def test_installed_packages_match_dpkg_query() -> None:
    require_tool("dpkg-query")
    truth, info = steady(_dpkg_truth, lambda: packages.collect(SystemRoots()))
    assert truth, "dpkg-query listed nothing"
    assert _ours(info) == truth
    assert info.manager == "dpkg"


def test_auto_installed_matches_apt_mark() -> None:
    require_tool("apt-mark")
    info = packages.collect(SystemRoots())
    auto = set(run_tool("apt-mark", "showauto").split())
    ours = {p.name for p in info.packages if p.auto_installed and p.state == "installed"}
    assert ours == {a.split(":")[0] for a in auto}


def test_installed_size_and_section_match_dpkg_query() -> None:
    out = run_tool("dpkg-query", "-W", "-f", "${Package}:${Architecture}\t${Installed-Size}\t"
                   "${Section}\t${Priority}\n")
    truth = {}
    for line in out.splitlines():
        name, size, section, priority = line.split("\t")
        truth[name] = (int(size) if size else None, section or None, priority or None)
    info = packages.collect(SystemRoots())
    for p in info.packages:
        if p.state != "not-installed":
            key = f"{p.name}:{p.architecture}"
            assert (p.installed_size_kib, p.section, p.priority) == truth[key], key


SANDBOX_STATUS = """\
Package: alpha
Status: install ok installed
Priority: optional
Section: utils
Installed-Size: 120
Maintainer: A <a@example.org>
Architecture: amd64
Version: 1.0-1
Description: first
 Package: not-a-package
 .
 more

Package: beta
Status: deinstall ok config-files
Priority: optional
Section: admin
Installed-Size: 10
Maintainer: B <b@example.org>
Architecture: all
Version: 2.0
Conffiles:
 /etc/beta.conf 0123456789abcdef0123456789abcdef
Description: removed

Package: gamma
Status: purge ok not-installed
Architecture: amd64

Package: libdelta
Status: hold ok installed
Architecture: i386
Multi-Arch: same
Maintainer: D <d@example.org>
Version: 3:1.2~rc1-0+deb12u1
Source: delta (1.2~rc1-0)
Description: x

Package: dpkg
Status: install ok installed
Essential: yes
Architecture: amd64
Maintainer: E <e@example.org>
Version: 1.21.22
Description: y
"""

SANDBOX_EXTENDED = """\
Package: libdelta
Architecture: i386
Auto-Installed: 1

Package: beta
Architecture: amd64
Auto-Installed: 1
"""


def test_sandbox_status_file_matches_dpkg_query_on_it(tmp_path: Path) -> None:
    write(tmp_path, "var/lib/dpkg/status", SANDBOX_STATUS)
    (tmp_path / "var/lib/dpkg/info").mkdir()
    write(tmp_path, "var/lib/apt/extended_states", SANDBOX_EXTENDED)
    info = packages.collect(SystemRoots.sandbox(tmp_path))
    assert _ours(info) == _dpkg_truth(str(tmp_path / "var/lib/dpkg"))
    by = {p.name: p for p in info.packages}
    assert "not-a-package" not in by
    assert (by["beta"].want, by["beta"].state) == ("deinstall", "config-files")
    assert by["libdelta"].want == "hold" and by["libdelta"].source == "delta"
    # arch:all packages are recorded by apt under the native arch (dpkg's own).
    assert by["beta"].auto_installed is True and by["libdelta"].auto_installed is True
    assert by["alpha"].auto_installed is False
    assert by["dpkg"].essential and by["alpha"].installed_size_kib == 120
    assert info.installed == 3


def test_no_dpkg_database(tmp_path: Path) -> None:
    info = packages.collect(SystemRoots.sandbox(tmp_path))
    assert (info.manager, info.packages) == (None, [])


def test_os_release_matches_python_parser() -> None:
    truth = platform.freedesktop_os_release()
    info = osinfo.collect(SystemRoots())
    assert info.os_release == truth
    assert info.id == truth["ID"]
    assert info.kernel.release == os.uname().release
    assert info.kernel.architecture in (None, os.uname().machine)
    assert info.hostname == os.uname().nodename
    assert info.boot_mode == ("uefi" if os.path.isdir("/sys/firmware/efi") else "bios")


def test_sandbox_os_release_link_escapes_and_uefi(sandbox: Path) -> None:
    write(sandbox, "usr/lib/os-release",
          'NAME="Weird \\"OS\\""\nID=weird\nID_LIKE="debian ubuntu"\n'
          "VERSION_ID='1.0'\n# comment\nPRETTY_NAME=\"A \\$B \\\\ C\"\n")
    symlink(sandbox, "etc/os-release", "../usr/lib/os-release")
    symlink(sandbox, "etc/localtime", "/usr/share/zoneinfo/Europe/Paris")
    symlink(sandbox, "sbin/init", "/lib/systemd/systemd")
    efivar = sandbox / "sys/firmware/efi/efivars"
    efivar.mkdir(parents=True)
    (efivar / f"SecureBoot-{osinfo.EFI_GLOBAL}").write_bytes(b"\x06\x00\x00\x00\x01")
    info = osinfo.collect(SystemRoots.sandbox(sandbox))
    assert info.name == 'Weird "OS"' and info.id == "weird"
    assert info.id_like == ["debian", "ubuntu"] and info.version_id == "1.0"
    assert info.pretty_name == "A $B \\ C"
    assert (info.boot_mode, info.secure_boot) == ("uefi", True)
    assert info.timezone == "Europe/Paris"
    assert (info.init_system, info.systemd_running) == ("systemd", False)


def test_sandbox_sysvinit(sandbox: Path) -> None:
    write(sandbox, "etc/inittab", "id:2:initdefault:\n")
    write(sandbox, "proc/1/comm", "init\n")
    info = osinfo.collect(SystemRoots.sandbox(sandbox))
    assert (info.init_system, info.pid1, info.boot_mode) == ("sysvinit", "init", "bios")


def test_package_relations_match_dpkg_query() -> None:
    fields = packages.DEP_FIELDS
    fmt = "${Package}:${Architecture}\t" + "\t".join("${" + f + "}" for f in fields) + "\n"
    out = run_tool("dpkg-query", "-W", "-f", fmt)
    checked = 0
    for line in out.splitlines()[:150]:  # a sample keeps the test short
        key, *values = line.split("\t")
        name, _, arch = key.partition(":")
        (rel,) = packages.package_relations(SystemRoots(), name, arch)
        truth = {f: v for f, v in zip(fields, values, strict=True) if v}
        assert {f: " ".join(v.split()) for f, v in rel.raw.items()} == truth, key
        checked += 1
    assert checked > 0


def test_parse_relation() -> None:
    groups = packages.parse_relation(
        "libc6 (>= 2.34), perl:any | perl-base (<< 6), foo [amd64] <!nocheck>, bar (= 1:2.0-1)")
    assert [[(d.name, d.arch, d.relation, d.version) for d in g] for g in groups] == [
        [("libc6", None, ">=", "2.34")],
        [("perl", "any", None, None), ("perl-base", None, "<<", "6")],
        [("foo", None, None, None)],
        [("bar", None, "=", "1:2.0-1")],
    ]
