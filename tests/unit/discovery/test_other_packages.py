"""rpm, flatpak and snap packages: a sandbox rpm database holding a package built here
with rpmbuild, an empty flatpak installation, snapd absent; compared with the tools."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from oseprovd.discovery.collectors import otherpkgs, packages
from oseprovd.discovery.fsread import target_reader
from oseprovd.discovery.roots import SystemRoots
from tests.unit.discovery.helpers import require_tool, run_tool, write

SPEC = """\
Name: ose-tiny
Version: 1.2.3
Release: 4
Epoch: 2
Summary: a package for the discovery tests
License: MIT
BuildArch: noarch
%description
Nothing inside.
%files
"""


def _rpm_db(sandbox: Path, tmp_path: Path, *, with_package: bool) -> Path:
    rpm = require_tool("rpm")
    db = sandbox / "var/lib/rpm"
    db.mkdir(parents=True)
    subprocess.run([rpm, "--initdb", "--dbpath", str(db)], check=True)
    if with_package:
        top = tmp_path / "rpmbuild"
        write(top, "SPECS/tiny.spec", SPEC)
        subprocess.run([require_tool("rpmbuild"), "-bb", "--define", f"_topdir {top}",
                        str(top / "SPECS/tiny.spec")], check=True, capture_output=True)
        built = next((top / "RPMS").rglob("*.rpm"))
        subprocess.run([rpm, "--dbpath", str(db), "--justdb", "--nodeps", "--noscripts",
                        "--nosignature", "-i", str(built)], check=True, capture_output=True)
    return db


def test_rpm_package_built_here(sandbox: Path, tmp_path: Path) -> None:
    db = _rpm_db(sandbox, tmp_path, with_package=True)
    info = packages.collect(SystemRoots.sandbox(sandbox)).other_managers
    assert info.rpm.state == "read", info.rpm.error
    assert [(p.name, p.epoch, p.version, p.release, p.architecture)
            for p in info.rpm_packages] == [("ose-tiny", 2, "1.2.3", "4", "noarch")]
    truth = run_tool("rpm", "--dbpath", str(db), "-qa", "--qf", "%{NVRA}\\n").split()
    assert [f"{p.name}-{p.version}-{p.release}.{p.architecture}"
            for p in info.rpm_packages] == truth


def test_rpm_empty_database(sandbox: Path, tmp_path: Path) -> None:
    db = _rpm_db(sandbox, tmp_path, with_package=False)
    info = otherpkgs.collect(SystemRoots.sandbox(sandbox),
                             target_reader(SystemRoots.sandbox(sandbox)))
    assert (info.rpm.state, info.rpm_packages) == ("read", [])
    assert run_tool("rpm", "--dbpath", str(db), "-qa") == ""


def test_a_broken_manager_fails_alone(sandbox: Path) -> None:
    require_tool("rpm")
    write(sandbox, "var/lib/rpm/rpmdb.sqlite", "not a database")
    _flatpak_installation(sandbox)
    info = packages.collect(SystemRoots.sandbox(sandbox)).other_managers
    assert info.rpm.state == "error" and info.rpm.error
    assert info.flatpak.state == "read" and info.snap.state == "absent"


def _flatpak_installation(sandbox: Path) -> Path:
    """An empty system installation, made by flatpak itself."""
    installation = sandbox / "var/lib/flatpak"
    subprocess.run([require_tool("flatpak"), "list", "--system"], check=True,
                   capture_output=True, env={"PATH": os.environ["PATH"], "HOME": "/nonexistent",
                                             "FLATPAK_SYSTEM_DIR": str(installation)})
    assert (installation / "repo").is_dir()
    return installation


def test_flatpak_empty_installation_and_absence(sandbox: Path) -> None:
    roots = SystemRoots.sandbox(sandbox)
    info = packages.collect(roots).other_managers
    assert info.flatpak.state == "absent"
    assert not (sandbox / "var/lib/flatpak").exists()  # not created by looking
    _flatpak_installation(sandbox)
    info = packages.collect(roots).other_managers
    assert (info.flatpak.state, info.flatpaks) == ("read", [])


def test_flatpak_this_machine_matches_the_tool() -> None:
    flatpak = require_tool("flatpak")
    info = packages.collect(SystemRoots()).other_managers
    if not Path("/var/lib/flatpak/repo").is_dir():
        assert info.flatpak.state == "absent"
        return
    truth = subprocess.run([flatpak, "list", "--system", "--columns=ref"], check=True,
                           capture_output=True, text=True).stdout.split()
    assert info.flatpak.state == "read"
    assert sorted(f"{f.kind}/{f.id}/{f.architecture}/{f.branch}" for f in info.flatpaks) \
        == sorted(truth)


def test_flatpak_and_snap_parsers() -> None:
    flat = otherpkgs.parse_flatpak(
        "app/org.gnome.Calculator/x86_64/stable\t45.0\tflathub\n"
        "runtime/org.gnome.Platform/x86_64/45\t\tflathub\n")
    assert [(f.kind, f.id, f.branch, f.version, f.origin) for f in flat] == [
        ("app", "org.gnome.Calculator", "stable", "45.0", "flathub"),
        ("runtime", "org.gnome.Platform", "45", None, "flathub")]
    snaps = otherpkgs.parse_snap_list(
        "Name    Version   Rev    Tracking       Publisher   Notes\n"
        "core22  20240111  1122   latest/stable  canonical** base\n"
        "lxd     5.21.1    28460  5.21/stable    canonical** -\n")
    assert [(s.name, s.revision, s.tracking, s.publisher, s.notes) for s in snaps] == [
        ("core22", "1122", "latest/stable", "canonical", ["base"]),
        ("lxd", "28460", "5.21/stable", "canonical", [])]


def test_snap_absent_is_not_an_error(sandbox: Path) -> None:
    # snapd can't run here: no socket on the live system means absent, not failed.
    live = packages.collect(SystemRoots()).other_managers
    if not Path("/run/snapd.socket").exists():
        assert (live.snap.state, live.snap.error, live.snaps) == ("absent", None, [])
    write(sandbox, "run/snapd.socket", "")  # a sandbox is never asked
    assert packages.collect(SystemRoots.sandbox(sandbox)).other_managers.snap.state \
        == "absent"
