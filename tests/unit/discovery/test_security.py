"""Security audit: sandbox roots with known problems; on this machine, compared with
find(1) and dpkg -S."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oseprovd.discovery import DiscoveryEngine
from oseprovd.discovery.collectors import security
from oseprovd.discovery.fsread import target_reader
from oseprovd.discovery.roots import SystemRoots
from tests.harness.components import require_root
from tests.unit.discovery.helpers import require_tool, run_tool, write

SSHD_MAIN = """\
Include /etc/ssh/sshd_config.d/*.conf
PermitRootLogin no
PasswordAuthentication no
X11Forwarding yes
Match User backup
    PermitEmptyPasswords yes
"""


def _ids(info: security.SecurityInfo) -> set[str]:
    return {f.id for f in info.findings}


def test_sshd_first_value_wins_and_match_blocks_are_conditional(sandbox: Path) -> None:
    write(sandbox, "etc/ssh/sshd_config", SSHD_MAIN)
    write(sandbox, "etc/ssh/sshd_config.d/10-cloud.conf", "PermitRootLogin yes\n")
    target = target_reader(SystemRoots.sandbox(sandbox))
    findings = {f.id: f for f in security.ssh_findings(target)}
    assert set(findings) == {"ssh.permitrootlogin", "ssh.x11forwarding"}
    assert findings["ssh.permitrootlogin"].severity == "high"
    assert "10-cloud.conf" in findings["ssh.permitrootlogin"].evidence[0]


def test_sshd_defaults_apply(sandbox: Path) -> None:
    write(sandbox, "etc/ssh/sshd_config", "Port 22\n")
    target = target_reader(SystemRoots.sandbox(sandbox))
    # OpenSSH's default allows passwords; nothing else is risky by default.
    assert {f.id for f in security.ssh_findings(target)} == {"ssh.passwordauthentication"}


def test_accounts(sandbox: Path) -> None:
    write(sandbox, "etc/shadow", "root:$y$j9T$abc:19000:0:99999:7:::\nguest::19000:0:99999:7:::\n"
          "daemon:*:19000:0:99999:7:::\nlocked:!:19000::::::\n")
    write(sandbox, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"
          "toor:x:0:0::/root:/bin/sh\nguest:x:1000:1000::/home/guest:/bin/sh\n")
    target = target_reader(SystemRoots.sandbox(sandbox))
    found = {f.id: f.evidence for f in security.account_findings(target)}
    assert found == {"accounts.empty-password": ["guest"], "accounts.extra-uid0": ["toor"]}


def test_sysctl_hardening(sandbox: Path) -> None:
    for key, value in {"kernel/randomize_va_space": "0", "fs/protected_symlinks": "1",
                       "kernel/kptr_restrict": "2", "kernel/dmesg_restrict": "0"}.items():
        write(sandbox, f"proc/sys/{key}", value + "\n")
    found = {f.id for f in security.sysctl_findings(SystemRoots.sandbox(sandbox))}
    assert found == {"sysctl.kernel.randomize_va_space", "sysctl.kernel.dmesg_restrict"}


def test_unpackaged_suid_and_world_writable(sandbox: Path) -> None:
    write(sandbox, "usr/bin/passwd", "x", mode=0o4755)
    write(sandbox, "usr/bin/sneaky", "x", mode=0o4755)
    write(sandbox, "usr/local/bin/wall2", "x", mode=0o2755)
    write(sandbox, "var/lib/dpkg/info/passwd.list", "/.\n/bin\n/bin/passwd\n")  # merged /usr
    write(sandbox, "etc/open.conf", "x", mode=0o666)
    (sandbox / "var/lib/drop").mkdir(parents=True)
    (sandbox / "var/lib/drop").chmod(0o777)
    (sandbox / "var/lib/shared").mkdir(parents=True)
    (sandbox / "var/lib/shared").chmod(0o1777)
    info = security.collect(SystemRoots.sandbox(sandbox))
    files = {f.path: f for f in info.suid_sgid_files}
    assert set(files) == {"/usr/bin/passwd", "/usr/bin/sneaky", "/usr/local/bin/wall2"}
    assert files["/usr/bin/passwd"].packaged and not files["/usr/bin/sneaky"].packaged
    assert files["/usr/local/bin/wall2"].mode == "2755"
    by = {f.id: f for f in info.findings}
    assert [e.split()[0] for e in by["files.unpackaged-suid"].evidence] == [
        "/usr/bin/sneaky", "/usr/local/bin/wall2"]
    assert by["files.world-writable-dir"].evidence == ["/var/lib/drop"]
    assert by["files.world-writable-file"].evidence == ["/etc/open.conf"]


@pytest.fixture
def tmpfs_in(sandbox: Path) -> Iterator[Path]:
    require_root("mounting a tmpfs inside the sandbox")
    mnt = sandbox / "usr/lib/mnt"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "ose-test", str(mnt)],
                   check=True, capture_output=True, timeout=30)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True, timeout=30)


def test_walk_never_crosses_a_mount_point(sandbox: Path, tmpfs_in: Path) -> None:
    (tmpfs_in / "hidden").write_text("x")
    (tmpfs_in / "hidden").chmod(0o4755)
    write(sandbox, "usr/bin/visible", "x", mode=0o4755)
    info = security.collect(SystemRoots.sandbox(sandbox))
    assert [f.path for f in info.suid_sgid_files] == ["/usr/bin/visible"]


def test_security_is_only_collected_when_named() -> None:
    engine = DiscoveryEngine()
    assert "security" not in engine.resolve(["all"])
    assert "security" in engine.resolve(["!all", "security"])


SUID_TREES_LIVE = [f"/{t}" for t in security.SUID_TREES
                   if os.path.isdir(f"/{t}") and not os.path.islink(f"/{t}")]


def test_live_suid_files_match_find_and_dpkg() -> None:
    out = run_tool("find", *SUID_TREES_LIVE, "-xdev", "-type", "f", "-perm", "/6000")
    truth = set(out.split())
    info = security.collect(SystemRoots())
    assert not info.walk_truncated
    assert {f.path for f in info.suid_sgid_files} == truth
    require_tool("dpkg")
    for f in info.suid_sgid_files:
        owned = subprocess.run(["dpkg", "-S", f.path], capture_output=True, timeout=60,
                               check=False).returncode == 0
        if not owned and f.path.startswith("/usr/"):  # merged /usr: dpkg may list /bin/x
            owned = subprocess.run(["dpkg", "-S", f.path[4:]], capture_output=True,
                                   timeout=60, check=False).returncode == 0
        assert f.packaged == owned, f.path


def test_live_world_writable_dirs_match_find() -> None:
    trees = [f"/{t}" for t in security.WRITABLE_TREES if os.path.isdir(f"/{t}")]
    out = run_tool("find", *trees, "-xdev", "-type", "d", "-perm", "-0002",
                   "!", "-perm", "-1000")
    info = security.collect(SystemRoots())
    finding = next((f for f in info.findings if f.id == "files.world-writable-dir"), None)
    assert set(finding.evidence if finding else []) == set(out.split())


FIREWALL_PROBE = ("import sys; from oseprovd.discovery.collectors import security as s; "
                  "from oseprovd.discovery.roots import SystemRoots as R; r = R(); "
                  "fw = s.firewall(r, s.target_reader(r)); "
                  "sys.stdout.write(fw.model_dump_json() + '\\n' + "
                  "','.join(f.id for f in s.firewall_findings(fw)))")


@pytest.fixture
def netns() -> Iterator[str]:
    require_tool("ip")
    require_root("creating a network namespace")
    name = f"ose-fw-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True,
                       timeout=30)


def _firewall_in(netns: str) -> tuple[security.FirewallInfo, str]:
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c",
                          FIREWALL_PROBE], check=True, capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[3]).stdout
    info, _, ids = out.partition("\n")
    return security.FirewallInfo.model_validate_json(info), ids


def test_firewall_rules_counted_in_a_private_namespace(netns: str) -> None:
    nft = require_tool("nft")
    empty, ids = _firewall_in(netns)
    assert (empty.tool, empty.rule_count) == ("nftables", 0) and ids == "network.no-firewall"
    run = ["ip", "netns", "exec", netns, nft]
    subprocess.run([*run, "add", "table", "inet", "ose"], check=True, timeout=30)
    subprocess.run([*run, "add", "chain", "inet", "ose", "input",
                    "{ type filter hook input priority 0; policy drop; }"], check=True,
                   timeout=30)
    for port in ("22", "80", "443"):
        subprocess.run([*run, "add", "rule", "inet", "ose", "input", "tcp", "dport", port,
                        "accept"], check=True, timeout=30)
    info, ids = _firewall_in(netns)
    assert (info.rule_count, info.tables, ids) == (3, ["inet ose"], "")
