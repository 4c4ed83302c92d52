"""A sandbox machine for the tuning engine: /proc/sys, /sys and / as tmp trees.

SandboxRoot behaves like the kernel where tests depend on it: an attribute write
replaces the whole value, choice files ("[none] kyber") move the brackets, and values the
kernel would refuse raise OSError(EINVAL). Truth in tests comes from reading the files
directly (snapshot()), never from the engine.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from oseprovd.errors import OseError
from oseprovd.system.rootfs import TargetRoot
from oseprovd.tuning.roots import TuningRoots

RELEASE = "6.1.0-sandbox"

PROC = {
    "sys/kernel/osrelease": RELEASE,
    "sys/vm/swappiness": "60",
    "sys/vm/dirty_ratio": "20",
    "sys/vm/dirty_background_ratio": "10",
    "sys/vm/dirty_writeback_centisecs": "500",
    "sys/vm/dirty_expire_centisecs": "3000",
    "sys/vm/vfs_cache_pressure": "100",
    "sys/vm/zone_reclaim_mode": "0",
    "sys/net/core/somaxconn": "4096",
    "sys/net/core/netdev_max_backlog": "1000",
    "sys/net/core/rmem_max": "212992",
    "sys/net/core/wmem_max": "212992",
    "sys/net/core/default_qdisc": "fq_codel",
    "sys/net/core/busy_poll": "0",
    "sys/net/core/busy_read": "0",
    "sys/net/ipv4/tcp_congestion_control": "cubic",
    "sys/net/ipv4/tcp_available_congestion_control": "reno cubic",
    "sys/net/ipv4/tcp_rmem": "4096\t131072\t6291456",
    "sys/net/ipv4/tcp_wmem": "4096\t16384\t4194304",
    "sys/net/ipv4/tcp_max_syn_backlog": "1024",
    "sys/net/ipv4/tcp_slow_start_after_idle": "1",
    "sys/net/ipv4/tcp_fastopen": "1",
    "sys/net/ipv4/tcp_mtu_probing": "0",
    "sys/fs/file-max": "9223372036854775807",
    "sys/fs/aio-max-nr": "65536",
    "sys/kernel/numa_balancing": "1",
    "sys/kernel/timer_migration": "1",
    "sys/kernel/sched_autogroup_enabled": "1",
    # protected keys exist too, so a refusal is the allowlist's doing, not absence
    "sys/kernel/core_pattern": "core",
    "sys/kernel/randomize_va_space": "2",
}
CPUFREQ = "devices/system/cpu/cpufreq"
DISKS = {
    # name: (device path under sys/, rotational, scheduler file)
    "nvme0n1": ("devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", "0",
                "[none] mq-deadline kyber bfq"),
    "sda": ("devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", "1",
            "none [mq-deadline] kyber bfq"),
    "sdb": ("devices/pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0/block/sdb", "0",
            "none [mq-deadline] kyber bfq"),
    "vda": ("devices/pci0000:00/0000:00:05.0/virtio1/block/vda", "1", "[none] mq-deadline"),
    "loop0": ("devices/virtual/block/loop0", "0", "[none] mq-deadline kyber bfq"),
}


def _sys_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for n in (0, 1):
        p = f"{CPUFREQ}/policy{n}"
        files[f"{p}/scaling_governor"] = "schedutil"
        files[f"{p}/scaling_available_governors"] = "conservative ondemand userspace " \
                                                   "powersave performance schedutil"
        files[f"{p}/energy_performance_preference"] = "balance_performance"
        files[f"{p}/energy_performance_available_preferences"] = (
            "default performance balance_performance balance_power power")
    files[f"{CPUFREQ}/boost"] = "1"
    files["kernel/mm/transparent_hugepage/enabled"] = "always [madvise] never"
    files["kernel/mm/transparent_hugepage/defrag"] = "always defer defer+madvise [madvise] never"
    files["module/zswap/parameters/enabled"] = "N"
    files["firmware/acpi/platform_profile"] = "balanced"
    files["firmware/acpi/platform_profile_choices"] = "low-power balanced performance"
    for path, rot, sched in DISKS.values():
        files[f"{path}/queue/scheduler"] = sched
        files[f"{path}/queue/rotational"] = rot
        files[f"{path}/queue/read_ahead_kb"] = "128"
    return files


class SandboxRoot(TargetRoot):
    """TargetRoot whose attribute writes act like the kernel's (see module doc)."""

    def write_existing(self, rel: str, data: bytes) -> None:
        value = data.decode().strip()
        old = self.read_bytes(rel).decode().strip()
        name = rel.rsplit("/", 1)[-1]
        new = value
        words = old.split()
        if any(w.startswith("[") for w in words):
            options = [w.strip("[]") for w in words]
            if value not in options:
                raise OSError(errno.EINVAL, "Invalid argument")
            new = " ".join(f"[{o}]" if o == value else o for o in options)
        elif name in ("scaling_governor", "energy_performance_preference"):
            avail = "scaling_available_governors" if name == "scaling_governor" else \
                "energy_performance_available_preferences"
            parent = rel.rsplit("/", 1)[0]
            if value not in self.read_bytes(f"{parent}/{avail}").decode().split():
                raise OSError(errno.EINVAL, "Invalid argument")
        elif name == "tcp_congestion_control":
            avail = self.read_bytes("sys/net/ipv4/tcp_available_congestion_control").decode()
            if value not in avail.split():
                raise OSError(errno.ENOENT, "No such file or directory")
        elif name == "platform_profile":
            choices = self.read_bytes("firmware/acpi/platform_profile_choices").decode()
            if value not in choices.split():
                raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        elif name == "default_qdisc":
            if value not in ("fq", "fq_codel", "pfifo_fast", "cake"):
                raise OSError(errno.ENOENT, "No such file or directory")
        elif name == "enabled" and "zswap" in rel:
            if value not in ("Y", "N"):
                raise OSError(errno.EINVAL, "Invalid argument")
        elif not all(w.lstrip("-").isdigit() for w in value.split()):
            raise OSError(errno.EINVAL, "Invalid argument")
        else:
            new = "\t".join(value.split())  # the kernel prints int vectors tab-separated
        # A plain file keeps old bytes past a shorter write; truncate as the kernel would.
        fd = os.open(self.host_path(rel), os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        try:
            os.write(fd, (new + "\n").encode())
        finally:
            os.close(fd)


class FakeLoader:
    """Stands in for modprobe: loading tcp_<x> makes <x> available, as the kernel does."""

    def __init__(self, proc: TargetRoot) -> None:
        self.proc = proc
        self.loaded: list[str] = []
        self.unloaded: list[str] = []

    def load(self, module: str) -> None:
        self.loaded.append(module)
        rel = "sys/net/ipv4/tcp_available_congestion_control"
        avail = self.proc.read_bytes(rel).decode().split()
        path = self.proc.path / rel
        path.write_text(" ".join([*avail, module.removeprefix("tcp_")]) + "\n")

    def unload(self, module: str) -> None:
        self.unloaded.append(module)
        rel = "sys/net/ipv4/tcp_available_congestion_control"
        avail = self.proc.read_bytes(rel).decode().split()
        name = module.removeprefix("tcp_")
        if self.proc.read_bytes("sys/net/ipv4/tcp_congestion_control").decode().strip() == name:
            raise OseError(f"{module} is in use")
        path = self.proc.path / rel
        path.write_text(" ".join(a for a in avail if a != name) + "\n")


def _write(base: Path, rel: str, text: str) -> None:
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def build(base: Path) -> TuningRoots:
    """Create the sandbox under base (proc/, sys/, root/) and return its roots."""
    for rel, text in PROC.items():
        _write(base / "proc", rel, text)
    for rel, text in _sys_files().items():
        _write(base / "sys", rel, text)
    (base / "sys/block").mkdir(parents=True, exist_ok=True)
    for name, (path, _, _) in DISKS.items():
        os.symlink(f"../{path}", base / "sys/block" / name)
    root = base / "root"
    _write(root, "etc/security/limits.d/10-local.conf", "@audio - rtprio 95")
    _write(root, "etc/sysctl.d/README.sysctl", "Files in this directory are read by "
           "systemd-sysctl at boot.")
    _write(root, f"lib/modules/{RELEASE}/modules.dep",
           "kernel/net/ipv4/tcp_bbr.ko.xz:\nkernel/net/ipv4/tcp_htcp.ko.xz:")
    return roots(base)


def roots(base: Path) -> TuningRoots:
    return TuningRoots(SandboxRoot(base / "proc"), SandboxRoot(base / "sys"),
                       SandboxRoot(base / "root"))


def snapshot(base: Path, times: bool = True) -> dict[str, tuple[object, ...]]:
    """Every entry under base, read directly: bytes, mode, owner, link targets, and (for the
    target root) modification times. sysfs/procfs attributes have no meaningful times."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(base))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            else:
                mtime = st.st_mtime_ns if times and rel.startswith("root/") else None
                out[rel] = ("file", path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid,
                            st.st_gid, mtime)
    return out
