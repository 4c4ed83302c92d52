"""sysctl knobs: a strict allowlist of keys, each with a value check.

Keys that weaken the kernel's own protections are refused by name, with a message that
says so; any other key not on the allowlist is refused too. Keys are checked against a
strict pattern first, so a path such as "../../etc/passwd" never reaches the filesystem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from oseprovd import errors
from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.knob import Knob
from oseprovd.tuning.roots import read_attr, write_attr

KEY_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9][a-z0-9_-]*){1,5}$")

# Refused outright: each of these is a security boundary, not a performance setting.
REFUSED_KEYS = frozenset(
    {
        "kernel.core_pattern",
        "kernel.core_pipe_limit",
        "kernel.core_uses_pid",
        "kernel.modprobe",
        "kernel.modules_disabled",
        "kernel.kexec_load_disabled",
        "kernel.kptr_restrict",
        "kernel.dmesg_restrict",
        "kernel.randomize_va_space",
        "kernel.perf_event_paranoid",
        "kernel.unprivileged_bpf_disabled",
        "kernel.unprivileged_userns_clone",
        "kernel.sysrq",
        "kernel.usermodehelper.bset",
        "kernel.usermodehelper.inheritable",
        "kernel.io_uring_disabled",
        "fs.suid_dumpable",
        "vm.mmap_min_addr",
        "vm.unprivileged_userfaultfd",
        "net.core.bpf_jit_harden",
        "net.core.bpf_jit_kallsyms",
        "net.core.bpf_jit_enable",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ip_forward",
        "user.max_user_namespaces",
        "dev.tty.ldisc_autoload",
    }
)
REFUSED_PREFIXES = (
    "fs.protected_",
    "kernel.yama.",
    "kernel.keys.",
    "net.ipv4.conf.",
    "net.ipv6.conf.",
    "kernel.seccomp.",
)


@dataclass(frozen=True)
class IntRange:
    lo: int
    hi: int

    def check(self, value: str) -> str:
        try:
            n = int(value, 10)
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
        if not self.lo <= n <= self.hi:
            raise ValueError(f"{n} is outside the allowed range {self.lo}..{self.hi}")
        return str(n)


@dataclass(frozen=True)
class IntTriple:
    """min default max, as in tcp_rmem: each in range and in order."""

    lo: int
    hi: int

    def check(self, value: str) -> str:
        parts = value.split()
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"expected three integers 'min default max', got {value!r}")
        a, b, c = (int(p) for p in parts)
        if not (self.lo <= a <= b <= c <= self.hi):
            raise ValueError(f"need {self.lo} <= min <= default <= max <= {self.hi}")
        return f"{a} {b} {c}"


@dataclass(frozen=True)
class PortRange:
    def check(self, value: str) -> str:
        parts = value.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"expected two port numbers 'low high', got {value!r}")
        a, b = int(parts[0]), int(parts[1])
        if not (1024 <= a < b <= 65535):
            raise ValueError("need 1024 <= low < high <= 65535")
        return f"{a} {b}"


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]

    def check(self, value: str) -> str:
        if value not in self.options:
            raise ValueError(f"{value!r} is not one of {', '.join(self.options)}")
        return value


@dataclass(frozen=True)
class Name:
    """A kernel-registered name (congestion control): pattern-checked, availability later."""

    def check(self, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", value):
            raise ValueError(f"{value!r} is not a valid name")
        return value


Check = IntRange | IntTriple | PortRange | Choice | Name
MEM = 1 << 30  # upper bound for socket buffer sizes: 1 GiB

ALLOWED: dict[str, Check] = {
    # memory
    "vm.swappiness": IntRange(0, 200),
    "vm.dirty_ratio": IntRange(1, 100),
    "vm.dirty_background_ratio": IntRange(0, 100),
    "vm.dirty_expire_centisecs": IntRange(100, 360000),
    "vm.dirty_writeback_centisecs": IntRange(0, 360000),
    "vm.vfs_cache_pressure": IntRange(1, 1000),
    "vm.max_map_count": IntRange(65530, 2147483647),
    "vm.zone_reclaim_mode": IntRange(0, 7),
    "vm.stat_interval": IntRange(1, 3600),
    "vm.page-cluster": IntRange(0, 10),
    "vm.watermark_scale_factor": IntRange(10, 3000),
    "vm.overcommit_memory": IntRange(0, 2),
    "vm.overcommit_ratio": IntRange(0, 100),
    # network
    "net.core.somaxconn": IntRange(128, 65535),
    "net.core.netdev_max_backlog": IntRange(100, 1000000),
    "net.core.netdev_budget": IntRange(100, 100000),
    "net.core.rmem_max": IntRange(4096, MEM),
    "net.core.wmem_max": IntRange(4096, MEM),
    "net.core.rmem_default": IntRange(4096, MEM),
    "net.core.wmem_default": IntRange(4096, MEM),
    "net.core.optmem_max": IntRange(4096, 1 << 24),
    "net.core.busy_poll": IntRange(0, 1000000),
    "net.core.busy_read": IntRange(0, 1000000),
    "net.core.default_qdisc": Choice(("fq", "fq_codel", "pfifo_fast", "cake")),
    "net.ipv4.tcp_congestion_control": Name(),
    "net.ipv4.tcp_rmem": IntTriple(4096, MEM),
    "net.ipv4.tcp_wmem": IntTriple(4096, MEM),
    "net.ipv4.tcp_max_syn_backlog": IntRange(128, 1 << 20),
    "net.ipv4.tcp_fastopen": IntRange(0, 3),
    "net.ipv4.tcp_slow_start_after_idle": IntRange(0, 1),
    "net.ipv4.tcp_tw_reuse": IntRange(0, 2),
    "net.ipv4.tcp_fin_timeout": IntRange(5, 120),
    "net.ipv4.tcp_keepalive_time": IntRange(30, 7200),
    "net.ipv4.tcp_keepalive_intvl": IntRange(5, 300),
    "net.ipv4.tcp_keepalive_probes": IntRange(1, 30),
    "net.ipv4.tcp_mtu_probing": IntRange(0, 2),
    "net.ipv4.tcp_notsent_lowat": IntRange(16384, 4294967295),
    "net.ipv4.tcp_no_metrics_save": IntRange(0, 1),
    "net.ipv4.tcp_max_tw_buckets": IntRange(4096, 1 << 24),
    "net.ipv4.ip_local_port_range": PortRange(),
    # files
    "fs.file-max": IntRange(65536, 2**63 - 1),
    "fs.nr_open": IntRange(1024, 1073741816),
    "fs.inotify.max_user_watches": IntRange(8192, 1 << 24),
    "fs.inotify.max_user_instances": IntRange(128, 1 << 16),
    "fs.aio-max-nr": IntRange(65536, 1 << 24),
    # scheduler (present on some kernels only: absent means not applicable)
    "kernel.sched_autogroup_enabled": IntRange(0, 1),
    "kernel.sched_migration_cost_ns": IntRange(0, 100_000_000),
    "kernel.sched_min_granularity_ns": IntRange(100_000, 100_000_000),
    "kernel.sched_wakeup_granularity_ns": IntRange(0, 100_000_000),
    "kernel.numa_balancing": IntRange(0, 1),
    "kernel.timer_migration": IntRange(0, 1),
    "kernel.nmi_watchdog": IntRange(0, 1),
    "kernel.pid_max": IntRange(32768, 4194304),
}


# The byte forms of the dirty thresholds: setting one zeroes its ratio form, and the
# original "0" cannot be written back (the kernel wants at least two pages), so a
# revert could not be exact. Profiles use the ratios.
BYTES_FORMS = {
    "vm.dirty_bytes": "vm.dirty_ratio",
    "vm.dirty_background_bytes": "vm.dirty_background_ratio",
}

# Keys the kernel changes when another is written (setting one of a pair zeroes the
# other); every other allowed key moves no other (see Knob.coupling).
COUPLED = {
    "vm.dirty_ratio": "vm.dirty", "vm.dirty_bytes": "vm.dirty",
    "vm.dirty_background_ratio": "vm.dirty_background",
    "vm.dirty_background_bytes": "vm.dirty_background",
}


def check_key(key: str) -> str:
    """Return the key if it may be tuned; raise InvalidArguments saying why not."""
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise errors.InvalidArguments(
            f"invalid sysctl key {key!r}: a key is dot-separated lowercase words "
            "such as 'vm.swappiness' (no slashes, no '..')"
        )
    if key in REFUSED_KEYS or key.startswith(REFUSED_PREFIXES):
        raise errors.InvalidArguments(
            f"sysctl key {key!r} is refused: changing it would weaken the kernel's "
            "own protections, so tuning never touches it"
        )
    if key in BYTES_FORMS:
        raise errors.InvalidArguments(
            f"sysctl key {key!r} is not supported: while it is unset the kernel reads it "
            "as 0, a value it refuses to be written back, so a revert could not restore "
            f"it exactly; set {BYTES_FORMS[key]!r} (a percentage) instead"
        )
    if key not in ALLOWED:
        raise errors.InvalidArguments(
            f"sysctl key {key!r} is not on the tuning allowlist; see docs/tuning.md "
            "for the keys that can be set"
        )
    return key


def check_value(key: str, value: str) -> str:
    """The normalized value for an allowed key; InvalidArguments naming key and reason."""
    check_key(key)
    try:
        return ALLOWED[key].check(" ".join(value.split()))
    except ValueError as e:
        raise errors.InvalidArguments(f"sysctl {key}: {e}") from None


def key_path(key: str) -> str:
    """Relative path under the procfs root: vm.swappiness -> sys/vm/swappiness."""
    return "sys/" + check_key(key).replace(".", "/")


class SysctlKnob(Knob):
    family = "sysctl"

    def __init__(self, proc: TargetRoot, key: str) -> None:
        super().__init__(f"sysctl:{check_key(key)}")
        self.key = key
        self.proc = proc
        self.path = key_path(key)
        self.coupling = COUPLED.get(key, "")

    def read(self) -> str | None:
        value = read_attr(self.proc, self.path)
        return None if value is None else " ".join(value.split())

    def write(self, value: str) -> None:
        write_attr(self.proc, self.path, value)

