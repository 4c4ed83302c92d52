"""CPU: /proc/cpuinfo for identity and flags, /sys/devices/system for topology."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from oseprovd.discovery.fsread import listdir, parse_cpulist, read_attr, read_int, read_text
from oseprovd.discovery.roots import SystemRoots


class CpuCache(BaseModel):
    level: int
    type: str  # Data, Instruction, Unified
    size_kib: int | None = None
    ways: int | None = None
    line_size: int | None = None
    instances: int = 1  # how many of this cache the machine has


class NumaNode(BaseModel):
    node: int
    cpus: list[int]
    memory_bytes: int | None = None


class CpuInfo(BaseModel):
    vendor: str | None = None
    model_name: str | None = None
    family: int | None = None
    model: int | None = None
    stepping: int | None = None
    architecture: str | None = None
    logical_cpus: int = 0  # online threads
    online: list[int] = []
    possible: int | None = None
    sockets: int = 0
    cores: int = 0  # physical cores, all sockets
    threads_per_core: int = 1
    flags: list[str] = []
    hypervisor_flag: bool = False
    min_mhz: float | None = None
    max_mhz: float | None = None
    current_mhz: float | None = None
    caches: list[CpuCache] = []
    numa_nodes: list[NumaNode] = []


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """One dict per processor block (blank-line separated 'key : value' lines)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value, 0)
    except ValueError:
        return None


def _size_kib(text: str | None) -> int | None:
    """Cache sizes as sysfs writes them: '32K', '1024K', '16M'."""
    if not text:
        return None
    units = {"K": 1, "M": 1024, "G": 1024 * 1024}
    suffix = text[-1].upper()
    try:
        if suffix in units:
            return int(text[:-1]) * units[suffix]
        return int(text) // 1024
    except ValueError:
        return None


def _topology(cpu_dir: Path, cpus: list[int], blocks: list[dict[str, str]]) -> tuple[int, int]:
    """(sockets, cores) counted from sysfs topology, falling back to cpuinfo ids."""
    packages: set[str] = set()
    cores: set[tuple[str, str, str]] = set()
    for cpu in cpus:
        topo = cpu_dir / f"cpu{cpu}" / "topology"
        pkg = read_attr(topo / "physical_package_id")
        core = read_attr(topo / "core_id")
        if pkg is None or core is None:
            continue
        die = read_attr(topo / "die_id") or "0"
        packages.add(pkg)
        cores.add((pkg, die, core))
    if packages:
        return len(packages), len(cores)
    ids = {(b.get("physical id", "0"), b.get("core id", str(i))) for i, b in enumerate(blocks)}
    return len({p for p, _ in ids}) or 1, len(ids) or len(cpus)


def _caches(cpu_dir: Path, cpus: list[int]) -> list[CpuCache]:
    seen: dict[tuple[int, str], set[str]] = {}
    first: dict[tuple[int, str], CpuCache] = {}
    for cpu in cpus:
        base = cpu_dir / f"cpu{cpu}" / "cache"
        for index in listdir(base):
            if not index.startswith("index"):
                continue
            d = base / index
            level = read_int(d / "level")
            ctype = read_attr(d / "type")
            if level is None or ctype is None:
                continue
            key = (level, ctype)
            shared = read_attr(d / "shared_cpu_list") or f"cpu{cpu}"
            seen.setdefault(key, set()).add(shared)
            if key not in first:
                first[key] = CpuCache(level=level, type=ctype,
                                      size_kib=_size_kib(read_attr(d / "size")),
                                      ways=read_int(d / "ways_of_associativity"),
                                      line_size=read_int(d / "coherency_line_size"))
    return [first[k].model_copy(update={"instances": len(seen[k])}) for k in sorted(first)]


def _numa(sys_root: Path) -> list[NumaNode]:
    node_dir = sys_root / "devices" / "system" / "node"
    nodes: list[NumaNode] = []
    for node in parse_cpulist(read_attr(node_dir / "online")):
        d = node_dir / f"node{node}"
        memory = None
        for line in (read_text(d / "meminfo") or "").splitlines():
            if "MemTotal:" in line:
                memory = int(line.split()[-2]) * 1024
        nodes.append(NumaNode(node=node, cpus=parse_cpulist(read_attr(d / "cpulist")),
                              memory_bytes=memory))
    return nodes


def _mhz(khz: int | None) -> float | None:
    return None if khz is None else khz / 1000


def collect(roots: SystemRoots) -> CpuInfo:
    blocks = parse_cpuinfo(read_text(roots.proc / "cpuinfo", 8 << 20) or "")
    cpu_dir = roots.sys / "devices" / "system" / "cpu"
    online = parse_cpulist(read_attr(cpu_dir / "online"))
    if not online:
        online = [_int(b.get("processor")) or i for i, b in enumerate(blocks)]
    first = blocks[0] if blocks else {}
    flags = sorted(set((first.get("flags") or first.get("Features") or "").split()))
    sockets, cores = _topology(cpu_dir, online, blocks)
    freq = cpu_dir / f"cpu{online[0]}" / "cpufreq" if online else cpu_dir
    current = read_int(freq / "scaling_cur_freq")
    cur_mhz = _mhz(current)
    if cur_mhz is None and first.get("cpu MHz"):
        cur_mhz = float(first["cpu MHz"])
    possible = parse_cpulist(read_attr(cpu_dir / "possible"))
    return CpuInfo(
        vendor=first.get("vendor_id") or first.get("CPU implementer"),
        model_name=first.get("model name") or first.get("Model") or first.get("cpu model"),
        family=_int(first.get("cpu family")),
        model=_int(first.get("model")),
        stepping=_int(first.get("stepping")),
        architecture=read_attr(roots.proc / "sys" / "kernel" / "arch"),
        logical_cpus=len(online),
        online=online,
        possible=len(possible) or None,
        sockets=sockets,
        cores=cores,
        threads_per_core=max(1, len(online) // cores) if cores else 1,
        flags=flags,
        hypervisor_flag="hypervisor" in flags,
        min_mhz=_mhz(read_int(freq / "cpuinfo_min_freq")),
        max_mhz=_mhz(read_int(freq / "cpuinfo_max_freq")),
        current_mhz=cur_mhz,
        caches=_caches(cpu_dir, online),
        numa_nodes=_numa(roots.sys),
    )
