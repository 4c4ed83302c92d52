"""Pending security updates from apt's lists: a sandbox with a hand-made dpkg status and
lz4/gz lists where the answer is known; on this machine, compared with
`apt list --upgradable`; version ordering compared with dpkg --compare-versions."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from oseprovd.discovery import aptupdates
from oseprovd.discovery.aptupdates import compare_versions, pending_security_updates
from oseprovd.discovery.collectors import security
from oseprovd.discovery.fsread import target_reader
from oseprovd.discovery.roots import SystemRoots
from tests.harness.components import missing
from tests.unit.discovery.helpers import require_tool, run_tool, steady, write

LISTS = "var/lib/apt/lists"
SEC = "deb.debian.org_debian-security_dists_bookworm-security_"
MAIN = "deb.debian.org_debian_dists_bookworm_"
UPD = "deb.debian.org_debian_dists_bookworm-updates_"


def _status(*pkgs: tuple[str, str, str, str]) -> str:
    return "\n".join(f"Package: {n}\nStatus: {s}\nPriority: optional\nArchitecture: {a}\n"
                     f"Version: {v}\nDescription: x\n two lines\n" for n, a, v, s in pkgs)


def _index(*pkgs: tuple[str, str, str]) -> bytes:
    return "\n".join(f"Package: {n}\nSource: {n}-src\nVersion: {v}\nInstalled-Size: 1\n"
                     f"Architecture: {a}\nDepends: libc6 (>= 2.36)\n" for n, a, v in pkgs
                     ).encode()


def _lz4(data: bytes) -> bytes:
    tool = require_tool("lz4")
    return subprocess.run([tool, "-c", "-"], input=data, capture_output=True, check=True
                          ).stdout


def _release(suite: str, codename: str) -> str:
    return ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n"
            f"Suite: {suite}\nCodename: {codename}\nDate: x\nSHA256:\n abc 0 main/x\n"
            "-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n")


def _machine(sandbox: Path) -> None:
    inst = "install ok installed"
    write(sandbox, "var/lib/dpkg/status", _status(
        ("openssl", "amd64", "3.0.15-1~deb12u1", inst),     # security fix pending
        ("tzdata", "all", "2024a-0+deb12u1", inst),          # arch all, security fix
        ("curl", "amd64", "7.88.1-10+deb12u5", inst),       # newer only in -updates
        ("bash", "amd64", "5.2.15-2+b7", inst),             # up to date
        ("libfoo", "amd64", "1:1.0-1", inst),               # epoch beats security's 2.0
        ("gone", "amd64", "1.0-1", "deinstall ok config-files"),  # not installed
        ("bar", "amd64", "1.0-1", inst),                    # security < updates: not sec
        ("multi", "i386", "1.0-1", inst),                   # only amd64 is offered
    ))
    write(sandbox, f"{LISTS}/{SEC}InRelease", _release("oldstable-security",
                                                       "bookworm-security"))
    write(sandbox, f"{LISTS}/{MAIN}InRelease", _release("oldstable", "bookworm"))
    write(sandbox, f"{LISTS}/{UPD}Release", _release("oldstable-updates", "bookworm-updates"))
    (sandbox / LISTS / f"{SEC}updates_main_binary-amd64_Packages.lz4").write_bytes(_lz4(_index(
        ("openssl", "amd64", "3.0.17-1~deb12u2"), ("tzdata", "all", "2025b-0+deb12u1"),
        ("libfoo", "amd64", "2.0-1"), ("bar", "amd64", "1.0-2"), ("gone", "amd64", "9"),
        ("multi", "amd64", "2.0-1"))))
    (sandbox / LISTS / f"{MAIN}main_binary-amd64_Packages.lz4").write_bytes(_lz4(_index(
        ("openssl", "amd64", "3.0.15-1~deb12u1"), ("bash", "amd64", "5.2.15-2+b7"),
        ("curl", "amd64", "7.88.1-10+deb12u5"), ("tzdata", "all", "2024a-0+deb12u1"))))
    (sandbox / LISTS / f"{UPD}main_binary-amd64_Packages.gz").write_bytes(gzip.compress(
        _index(("curl", "amd64", "7.88.1-10+deb12u12"), ("bar", "amd64", "1.0-3"))))


def test_sandbox_known_answer(sandbox: Path) -> None:
    _machine(sandbox)
    info = security.collect(SystemRoots.sandbox(sandbox))
    pending = info.security_updates
    assert info.security_updates_error is None
    assert pending.checked and pending.lists == 3 and pending.unreadable == []
    got = {(u.name, u.architecture, u.installed_version, u.candidate_version, tuple(u.suites))
           for u in pending.updates}
    assert got == {
        ("openssl", "amd64", "3.0.15-1~deb12u1", "3.0.17-1~deb12u2", ("bookworm-security",)),
        ("tzdata", "all", "2024a-0+deb12u1", "2025b-0+deb12u1", ("bookworm-security",)),
    }
    finding = next(f for f in info.findings if f.id == "packages.security-updates")
    assert len(finding.evidence) == 2


@pytest.mark.parametrize("use_module", [True, False], ids=["lz4-module", "lz4-tool"])
def test_lz4_both_ways(use_module: bool) -> None:
    if use_module:
        pytest.importorskip("lz4.frame")  # optional: the tool is the fallback
    plain = _index(("a", "amd64", "1")) * 1000
    packed = _lz4(plain)
    assert aptupdates.decompress("x_Packages.lz4", packed, use_module) == plain
    assert aptupdates.decompress("x_Packages.lz4", packed[:-20], use_module) is None
    assert aptupdates.decompress("x_Packages.lz4", b"garbage" * 9, use_module) is None


def test_a_damaged_list_is_named(sandbox: Path) -> None:
    _machine(sandbox)
    damaged = sandbox / LISTS / f"{SEC}updates_main_binary-amd64_Packages.lz4"
    damaged.write_bytes(damaged.read_bytes()[:-30])
    info = security.collect(SystemRoots.sandbox(sandbox))
    assert info.security_updates.unreadable == [damaged.name]
    assert info.security_updates.updates == []
    finding = next(f for f in info.findings if f.id == "packages.lists-unreadable")
    assert finding.evidence == [damaged.name]


def test_no_lists_is_not_checked(sandbox: Path) -> None:
    write(sandbox, "var/lib/dpkg/status", _status(("bash", "amd64", "1", "install ok installed")))
    pending = pending_security_updates(target_reader(SystemRoots.sandbox(sandbox)),
                                       [("bash", "amd64", "1")])
    assert not pending.checked and pending.updates == []


def test_versions_ordered_like_dpkg() -> None:
    dpkg = require_tool("dpkg")
    versions = ["1.0", "1.0-1", "1.0-1~bpo1", "1.0~rc1", "1.0~~", "1.0+b1", "1:0.9",
                "0:1.0", "1.0a", "1.00", "1.0-1+deb12u1", "1.0-1+deb12u10",
                "2.0~beta", "1.0-0", "10", "9.9", "1.0-1.1", "1.0-a", "2:1"]
    for a in versions:
        for b in versions:
            ours = compare_versions(a, b)
            truth = subprocess.run([dpkg, "--compare-versions", "--", a, "lt", b]).returncode
            assert (ours < 0) == (truth == 0), (a, b)


def _apt_truth() -> set[tuple[str, str]]:
    out = run_tool("apt", "list", "--upgradable")
    found = set()
    for line in out.splitlines():
        head, _, rest = line.partition(" ")
        name, _, suites = head.partition("/")
        fields = rest.split()
        if len(fields) >= 2 and any(s.endswith("-security") for s in suites.split(",")):
            found.add((name.split(":")[0], fields[1]))
    return found


def test_this_machine_matches_apt_list_upgradable() -> None:
    roots = SystemRoots()
    if not target_reader(roots).listdir(LISTS):
        missing("this machine has no apt lists to compare with")
    truth, ours = steady(_apt_truth, lambda: security.security_updates(
        roots, target_reader(roots)))
    assert ours.checked and not ours.unreadable
    assert {(u.name, u.architecture) for u in ours.updates} == truth
