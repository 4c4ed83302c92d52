"""Security audit: risky sshd settings, accounts, kernel hardening knobs, SUID/SGID files
outside package ownership, world-writable places, exposed ports, firewall.

Read-only. Tree walks stay on one filesystem (never cross a mount point, never enter a
network filesystem) and stop after MAX_WALK entries, saying so. Each finding has an id,
a severity, evidence and what to do about it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import stat
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel

from oseprovd.discovery import aptupdates, probe
from oseprovd.discovery.aptupdates import PendingUpdates
from oseprovd.discovery.collectors import packages, sockets
from oseprovd.discovery.fsread import TargetReader, read_attr, target_reader
from oseprovd.discovery.roots import SystemRoots

Severity = Literal["info", "low", "medium", "high"]
MAX_WALK = 400_000
SUID_TREES = ("usr", "opt", "bin", "sbin", "lib", "srv", "home")
WRITABLE_TREES = ("etc", "usr", "opt", "var/lib", "boot", "srv")
LOOPBACK = ("127.", "::1")


class Finding(BaseModel):
    id: str
    severity: Severity
    title: str
    evidence: list[str]
    remediation: str


class SpecialFile(BaseModel):
    path: str
    mode: str  # octal, e.g. 4755
    uid: int
    packaged: bool


class FirewallInfo(BaseModel):
    tool: str | None = None  # nftables, iptables
    tables: list[str] = []  # netfilter tables the kernel has loaded
    rule_count: int | None = None  # None when it could not be counted


class SecurityInfo(BaseModel):
    findings: list[Finding] = []
    suid_sgid_files: list[SpecialFile] = []
    firewall: FirewallInfo = FirewallInfo()
    walk_truncated: bool = False
    security_updates: PendingUpdates = PendingUpdates()
    security_updates_error: str | None = None  # the check failed; the rest still counts


# --- sshd -----------------------------------------------------------------------------

_SSHD_RISKS: tuple[tuple[str, str, Severity, str, str], ...] = (
    ("permitrootlogin", "yes", "high", "sshd allows root to log in with a password",
     "Set 'PermitRootLogin prohibit-password' (or 'no') in /etc/ssh/sshd_config.d/."),
    ("permitemptypasswords", "yes", "high", "sshd accepts empty passwords",
     "Set 'PermitEmptyPasswords no'."),
    ("passwordauthentication", "yes", "medium", "sshd accepts password logins",
     "Use keys and set 'PasswordAuthentication no'."),
    ("x11forwarding", "yes", "low", "sshd forwards X11", "Set 'X11Forwarding no'."),
    ("permituserenvironment", "yes", "medium", "users can set sshd's environment",
     "Set 'PermitUserEnvironment no'."),
)
# OpenSSH defaults for the keys above (sshd_config(5)).
_SSHD_DEFAULTS = {"permitrootlogin": "prohibit-password", "permitemptypasswords": "no",
                  "passwordauthentication": "yes", "x11forwarding": "no",
                  "permituserenvironment": "no"}


def sshd_effective(target: TargetReader, rel: str = "etc/ssh/sshd_config",
                   depth: int = 0) -> dict[str, tuple[str, str]]:
    """keyword -> (value, file). sshd keeps the first value it reads; Include is read in
    place; lines in Match blocks are conditional and are not counted."""
    values: dict[str, tuple[str, str]] = {}
    text = target.read_text(rel, 1 << 20)
    if text is None or depth > 8:
        return values
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].replace("=", " ", 1).split()
        if len(words) < 2:
            continue
        key = words[0].lower()
        if key == "match":
            break
        if key == "include":
            for pattern in words[1:]:
                for inc in _glob(target, pattern if pattern.startswith("/")
                                 else f"/etc/ssh/{pattern}"):
                    for k, v in sshd_effective(target, inc, depth + 1).items():
                        values.setdefault(k, v)
            continue
        values.setdefault(key, (words[1].lower(), "/" + rel))
    return values


def _glob(target: TargetReader, pattern: str) -> list[str]:
    head, _, name = pattern.lstrip("/").rpartition("/")
    return sorted(f"{head}/{n}" for n in target.listdir(head) if fnmatch.fnmatch(n, name))


def ssh_findings(target: TargetReader) -> list[Finding]:
    if not target.exists("etc/ssh/sshd_config"):
        return []
    effective = sshd_effective(target)
    findings = []
    for key, bad, severity, title, fix in _SSHD_RISKS:
        value, where = effective.get(key, (_SSHD_DEFAULTS[key], "default"))
        if value == bad:
            findings.append(Finding(id=f"ssh.{key}", severity=severity, title=title,
                                    evidence=[f"{key} {value} ({where})"], remediation=fix))
    return findings


# --- accounts ---------------------------------------------------------------------------

def account_findings(target: TargetReader) -> list[Finding]:
    findings = []
    empty = [line.split(":", 1)[0] for line in
             (target.read_text("etc/shadow", 4 << 20) or "").splitlines()
             if line.count(":") >= 2 and line.split(":")[1] == ""]
    if empty:
        findings.append(Finding(
            id="accounts.empty-password", severity="high",
            title="accounts with an empty password", evidence=empty,
            remediation="Lock them (passwd -l NAME) or set a password."))
    root_ids = [f[0] for f in (line.split(":") for line in
                               (target.read_text("etc/passwd", 4 << 20) or "").splitlines())
                if len(f) > 3 and f[2] == "0" and f[0] != "root"]
    if root_ids:
        findings.append(Finding(
            id="accounts.extra-uid0", severity="high", title="accounts other than root have uid 0",
            evidence=root_ids, remediation="Give them their own uid or remove them."))
    return findings


# --- kernel knobs ---------------------------------------------------------------------

# (sysctl, hardened value, severity, what the hardened value means)
_SYSCTL: tuple[tuple[str, str, Severity, str], ...] = (
    ("kernel.randomize_va_space", "2", "medium", "full address-space randomization"),
    ("fs.protected_symlinks", "1", "medium", "symlink protection in sticky directories"),
    ("fs.protected_hardlinks", "1", "medium", "hardlink protection"),
    ("fs.suid_dumpable", "0", "low", "no core dumps of setuid programs"),
    ("kernel.kptr_restrict", "1", "low", "kernel pointers hidden from users"),
    ("kernel.dmesg_restrict", "1", "low", "kernel log restricted to admins"),
    ("net.ipv4.conf.all.accept_redirects", "0", "low", "ICMP redirects ignored"),
    ("net.ipv4.conf.all.accept_source_route", "0", "low", "source-routed packets dropped"),
)


def sysctl_findings(roots: SystemRoots) -> list[Finding]:
    findings = []
    for key, want, severity, meaning in _SYSCTL:
        value = read_attr(roots.proc / "sys" / key.replace(".", "/"))
        if value is None:
            continue
        ok = int(value) >= int(want) if key in ("kernel.kptr_restrict",
                                                "kernel.dmesg_restrict") else value == want
        if not ok:
            findings.append(Finding(
                id=f"sysctl.{key}", severity=severity, title=f"{key} is {value}",
                evidence=[f"{key} = {value}, hardened value {want} ({meaning})"],
                remediation=f"Set {key} = {want} in /etc/sysctl.d/ (osectl tuning can)."))
    return findings


# --- file walks ---------------------------------------------------------------------------

def walk(target: TargetReader, rel: str, budget: list[int]
         ) -> Iterator[tuple[str, os.stat_result]]:
    """(path in the target, lstat) under `rel`, staying on its filesystem; no symlinks
    followed; budget[0] counts down and stops the walk at zero."""
    try:
        top = target.resolve(rel)
    except OSError:
        return
    if top is None or not top.is_dir() or top.is_symlink():
        return
    root_dev = os.lstat(top).st_dev
    prefix = len(str(target.root).rstrip("/"))
    stack = [str(top)]
    while stack and budget[0] > 0:
        current = stack.pop()
        if target.mounts.is_remote_mountpoint(current):
            continue
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            budget[0] -= 1
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_dev != root_dev:
                continue  # a mount point: another filesystem, not walked
            yield entry.path[prefix:] or "/", st
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)


def _owned_paths(target: TargetReader, wanted: set[str]) -> set[str]:
    """Which of `wanted` some dpkg package lists (with merged-/usr aliases)."""
    aliases: dict[str, str] = {}
    for path in wanted:
        aliases[path] = path
        if path.startswith("/usr/") and path.count("/") >= 3:
            aliases["/" + path[len("/usr/"):]] = path
    owned: set[str] = set()
    for name in target.listdir("var/lib/dpkg/info"):
        if not name.endswith(".list"):
            continue
        for line in (target.read_text(f"var/lib/dpkg/info/{name}", 16 << 20) or "").splitlines():
            if line in aliases:
                owned.add(aliases[line])
    return owned


def special_files(target: TargetReader, budget: list[int]
                  ) -> tuple[list[SpecialFile], list[str], list[str]]:
    """(SUID/SGID files, world-writable dirs without sticky bit, world-writable files)."""
    special: list[tuple[str, os.stat_result]] = []
    open_dirs: list[str] = []
    open_files: list[str] = []
    seen: set[tuple[int, int]] = set()
    for tree in dict.fromkeys(SUID_TREES + WRITABLE_TREES):
        for path, st in walk(target, tree, budget):
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            mode = st.st_mode
            if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                special.append((path, st))
            in_system = path.split("/")[1] in {t.split("/")[0] for t in WRITABLE_TREES}
            if in_system and mode & stat.S_IWOTH and not stat.S_ISLNK(mode):
                if stat.S_ISDIR(mode) and not mode & stat.S_ISVTX:
                    open_dirs.append(path)
                elif stat.S_ISREG(mode):
                    open_files.append(path)
    owned = _owned_paths(target, {p for p, _ in special})
    files = [SpecialFile(path=p, mode=f"{stat.S_IMODE(st.st_mode):04o}", uid=st.st_uid,
                         packaged=p in owned) for p, st in sorted(special)]
    return files, sorted(open_dirs), sorted(open_files)


def file_findings(files: list[SpecialFile], open_dirs: list[str],
                  open_files: list[str]) -> list[Finding]:
    findings = []
    stray = [f"{f.path} ({f.mode}, uid {f.uid})" for f in files if not f.packaged]
    if stray:
        findings.append(Finding(
            id="files.unpackaged-suid", severity="high",
            title="setuid/setgid programs that no package installed", evidence=stray,
            remediation="Check where they came from; remove them or drop the bit "
                        "(chmod u-s,g-s FILE)."))
    if open_dirs:
        findings.append(Finding(
            id="files.world-writable-dir", severity="medium",
            title="world-writable directories without the sticky bit", evidence=open_dirs,
            remediation="chmod o-w DIR, or chmod +t DIR if it must be shared."))
    if open_files:
        findings.append(Finding(
            id="files.world-writable-file", severity="medium",
            title="world-writable files in system paths", evidence=open_files,
            remediation="chmod o-w FILE."))
    return findings


# --- network ----------------------------------------------------------------------------

def port_findings(roots: SystemRoots) -> list[Finding]:
    info = sockets.collect(roots)
    exposed = [f"{s.protocol} {s.address}:{s.port} "
               f"{','.join(f'{o.comm}[{o.pid}]' for o in s.owners) or '?'}"
               for s in info.listening if not s.address.startswith(LOOPBACK)]
    if not exposed:
        return []
    return [Finding(id="network.open-ports", severity="info",
                    title="services listening beyond loopback", evidence=exposed,
                    remediation="Stop what is not needed, bind it to localhost, or "
                                "filter it.")]


def count_nft_rules(ruleset_json: str) -> tuple[int, list[str]] | None:
    """(rules, 'family name' of tables) from `nft -j list ruleset`; None if unreadable."""
    try:
        items = json.loads(ruleset_json).get("nftables", [])
    except (ValueError, AttributeError):
        return None
    rules = sum(1 for item in items if isinstance(item, dict) and "rule" in item)
    tables = [f"{i['table'].get('family')} {i['table'].get('name')}" for i in items
              if isinstance(i, dict) and isinstance(i.get("table"), dict)]
    return rules, tables


def firewall(roots: SystemRoots, target: TargetReader) -> FirewallInfo:
    legacy = (read_attr(roots.proc / "net" / "ip_tables_names") or "").split()
    nft = probe.first_present(target, ("/usr/sbin/nft", "/sbin/nft"))
    if nft is None:
        return FirewallInfo(tool="iptables" if legacy else None, tables=legacy)
    # Reading the ruleset is a netlink query to the local kernel: no packets are sent.
    out = probe.run_output(roots, [nft, "-j", "list", "ruleset"])
    counted = count_nft_rules(out) if out is not None else None
    if counted is None:
        return FirewallInfo(tool="nftables", tables=legacy)
    rules, tables = counted
    return FirewallInfo(tool="nftables", tables=tables + legacy, rule_count=rules)


def firewall_findings(info: FirewallInfo) -> list[Finding]:
    if info.rule_count == 0 or (info.tool is None and not info.tables):
        return [Finding(id="network.no-firewall", severity="low",
                        title="no packet filter rules are loaded",
                        evidence=[f"tool: {info.tool or 'none'}, rules: {info.rule_count}"],
                        remediation="Install and enable nftables with a default-deny "
                                    "input policy.")]
    return []


# --- pending security updates -------------------------------------------------------------

def security_updates(roots: SystemRoots, target: TargetReader) -> PendingUpdates:
    installed = [(p.name, p.architecture or "", p.version or "")
                 for p in packages.dpkg_info(target).packages
                 if p.state == "installed" and p.version]
    return aptupdates.pending_security_updates(target, installed)


def update_findings(pending: PendingUpdates) -> list[Finding]:
    findings = []
    if pending.unreadable:
        findings.append(Finding(
            id="packages.lists-unreadable", severity="low",
            title="some apt lists could not be read: security updates may be missing",
            evidence=pending.unreadable,
            remediation="Install the lz4 tool (or the lz4 Python module), or run "
                        "apt-get update to refresh damaged lists."))
    if not pending.updates:
        return findings
    return [*findings, Finding(
        id="packages.security-updates", severity="high",
        title="security updates are available but not installed",
        evidence=[f"{u.name}:{u.architecture} {u.installed_version} -> "
                  f"{u.candidate_version} ({', '.join(u.suites)})" for u in pending.updates],
        remediation="apt-get update && apt-get upgrade (or enable unattended-upgrades).")]


def collect(roots: SystemRoots) -> SecurityInfo:
    target = target_reader(roots)
    updates_error = None
    try:
        pending = security_updates(roots, target)
    except Exception as exc:  # its own failure, reported; the audit goes on
        pending, updates_error = PendingUpdates(), f"{type(exc).__name__}: {exc}"
    budget = [MAX_WALK]
    files, open_dirs, open_files = special_files(target, budget)
    fw = firewall(roots, target)
    findings = (ssh_findings(target) + account_findings(target) + sysctl_findings(roots)
                + file_findings(files, open_dirs, open_files) + port_findings(roots)
                + firewall_findings(fw) + update_findings(pending))
    order = {"high": 0, "medium": 1, "low": 2, "info": 3}
    findings.sort(key=lambda f: (order[f.severity], f.id))
    return SecurityInfo(findings=findings, suid_sgid_files=files, firewall=fw,
                        walk_truncated=budget[0] <= 0, security_updates=pending,
                        security_updates_error=updates_error)

