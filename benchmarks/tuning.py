"""Tuning: oseprovd's profile apply/revert beside TuneD's profile switch, on this machine.

Both tools tune the REAL kernel here (/proc/sys, /sys), one after the other, in
interleaved rounds, and every value either of them touched ends as it began:

- TuneD (Debian package `tuned`, installed if missing) runs as its own daemon on a
  private system bus (its own bus policy, no systemd), in a private mount namespace
  whose /etc/tuned and /run/tuned are temporary copies, so its state files never touch
  the host's. Its `reapply_sysctl` is turned off there: with it on, TuneD re-applies
  the host's /usr/lib/sysctl.d files (kernel.pid_max, fs.protected_*) on every switch
  and never reverts them, which would change this machine for good.
- oseprovd runs on a second private bus with --proc-root /proc --sys-root /sys and a
  temporary --root (so its limits.d file and state stay out of the host's /etc). The
  two buses are separate so that neither daemon sees the other as a power manager.

Measured, per round and tool: the whole client process (`tuned-adm profile X` /
`osectl tune apply Y`, alternating between two profiles so every switch does real
work, then `tuned-adm off` / `osectl tune revert`); the daemon's own work (TuneD:
switch_profile call to its profile_changed signal, disable call; oseprovd: Apply or
Revert call to the job's Finished signal, and the job's own Started..Finished); the
daemons' resident memory; and the run-to-run noise of `osectl tune bench --suite quick`.
The kernel values are snapshotted first and compared (and restored, if anything was
left) at the end, whatever happens in between.

    .venv/bin/python -m benchmarks.tuning [--rounds 5] [--bench-runs 3] [--no-results]

Run as root from the repository root. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from tests.harness.busclient import wait_for_name_sync
from tests.harness.daemon import DaemonProcess
from tests.harness.sysbus import PrivateSystemBus

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
SECTION = "## Tuning (benchmarks/tuning.py)"

# Comparable pairs: a throughput profile and a latency profile from each tool. Switching
# back and forth means every switch reverts one profile and applies the other.
TUNED_PROFILES = ("throughput-performance", "latency-performance")
OSE_PROFILES = ("server_production", "latency")
# The same work as TuneD's pair where this machine allows it: their sysctl values, as
# oseprovd profiles (in the daemon's own --root, not the host's /etc). This isolates the
# daemons' own overhead from what the shipped profiles choose to change (ours also set
# the I/O scheduler, whose switch costs the kernel ~20 ms per disk).
MIRROR_PROFILES = {
    "bench_tuned_throughput": "[memory]\nswappiness = 10\ndirty_ratio = 40\n"
                              "dirty_background_ratio = 10\n",
    "bench_tuned_latency": "[memory]\nswappiness = 10\ndirty_ratio = 10\n"
                           "dirty_background_ratio = 3\n",
}

TUNED_BIN = Path("/usr/sbin/tuned")
TUNED_ADM = "tuned-adm"
TUNED_NAME, TUNED_PATH, TUNED_IFACE = "com.redhat.tuned", "/Tuned", "com.redhat.tuned.control"
TUNED_POLICY_DIRS = (Path("/usr/share/dbus-1/system.d"), Path("/etc/dbus-1/system.d"))
TUNED_UNIT_LINK = Path("/etc/systemd/system/multi-user.target.wants/tuned.service")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")

OSE_NAME = "org.ose.Provisioning1"
OSE_TUNING = ("/org/ose/Provisioning1/Tuning", "org.ose.Tuning1")
JOB_IFACE = "org.ose.Job1"
PROPS = "org.freedesktop.DBus.Properties"

# Runs inside `unshare --mount --propagation private`: bind the private state dirs over
# TuneD's fixed paths, then become tuned (same pid, so readiness can check the owner).
TUNED_WRAPPER = """
import os, subprocess, sys
etc, run, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
subprocess.run(["mount", "--bind", "--", etc, "/etc/tuned"], check=True)
subprocess.run(["mount", "--bind", "--", run, "/run/tuned"], check=True)
os.execv(argv[0], argv)
"""

# ---- the host's kernel values -------------------------------------------------------

# Writable knobs that change on their own or are write-only triggers.
VOLATILE = {
    "/proc/sys/kernel/ns_last_pid", "/proc/sys/kernel/perf_event_max_sample_rate",
    "/proc/sys/vm/drop_caches", "/proc/sys/vm/compact_memory", "/proc/sys/vm/stat_refresh",
    "/proc/sys/kernel/sysctl_writes_strict",
}
SYS_GLOBS = (
    "block/*/queue/scheduler", "block/*/queue/read_ahead_kb", "block/*/queue/nr_requests",
    "block/*/queue/rq_affinity", "block/*/queue/add_random", "block/*/queue/iostats",
    "kernel/mm/transparent_hugepage/enabled", "kernel/mm/transparent_hugepage/defrag",
    "kernel/mm/transparent_hugepage/khugepaged/defrag",
    "devices/system/cpu/cpu*/cpufreq/scaling_governor",
    "devices/system/cpu/cpu*/cpufreq/energy_performance_preference",
    "devices/system/cpu/cpu*/cpufreq/scaling_min_freq",
    "devices/system/cpu/cpufreq/boost", "devices/system/cpu/intel_pstate/*_perf_pct",
    "devices/system/cpu/intel_pstate/no_turbo", "module/zswap/parameters/enabled",
    "firmware/acpi/platform_profile",
)
SHOWN = ("vm.swappiness", "vm.dirty_ratio", "vm.dirty_background_ratio",
         "vm.vfs_cache_pressure", "net.core.somaxconn", "net.core.netdev_max_backlog",
         "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_congestion_control", "fs.file-max",
         "kernel.numa_balancing", "kernel.timer_migration", "kernel.pid_max",
         "fs.protected_regular", "thp.enabled", "vda.scheduler", "vda.read_ahead_kb")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def kernel_snapshot() -> dict[str, str]:
    """Every writable /proc/sys value in the directories profiles touch, and the /sys
    attributes they tune: path -> text."""
    snap: dict[str, str] = {}
    for top in ("vm", "net/core", "net/ipv4", "kernel", "fs"):
        base = Path("/proc/sys", top)
        for p in sorted(base.iterdir()) if base.is_dir() else []:
            if p.is_file() and str(p) not in VOLATILE and p.stat().st_mode & 0o200:
                value = _read(p)
                if value is not None:
                    snap[str(p)] = value
    for pattern in SYS_GLOBS:
        for p in sorted(Path("/sys").glob(pattern)):
            value = _read(p)
            if value is not None:
                snap[str(p)] = value
    return snap


def shown(snap: dict[str, str]) -> dict[str, str]:
    out = {}
    for key in SHOWN:
        if key == "thp.enabled":
            path = "/sys/kernel/mm/transparent_hugepage/enabled"
        elif key.startswith("vda."):
            path = f"/sys/block/vda/queue/{key[4:]}"
        else:
            path = "/proc/sys/" + key.replace(".", "/")
        if path in snap:
            out[key] = snap[path]
    return out


def _selected(text: str) -> str:
    """'none [mq-deadline] kyber' -> 'mq-deadline'; other values unchanged."""
    if "[" in text and "]" in text:
        return text[text.index("[") + 1:text.index("]")]
    return text


def changed(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {k: (v, after.get(k, "?")) for k, v in before.items() if after.get(k) != v}


def restore(before: dict[str, str]) -> list[str]:
    """Write back every value that differs from `before`; the ones that would not go back."""
    for path, (old, _new) in changed(before, kernel_snapshot()).items():
        with contextlib.suppress(OSError):
            Path(path).write_text(_selected(old))
    return [f"{p}: {v[1]!r}, was {v[0]!r}" for p, v in changed(before, kernel_snapshot()).items()]


# ---- installing TuneD -----------------------------------------------------------------

def tuned_pids() -> set[int]:
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (d / "cmdline").read_bytes().split(b"\0")
                if any(part.endswith(b"/tuned") for part in cmd[:3]):
                    pids.add(int(d.name))
    return pids


def ensure_tuned() -> str:
    """Install the `tuned` package if it is missing, leaving no daemon running and no
    unit enabled that was not before. Returns what was done."""
    if TUNED_BIN.exists() and shutil.which(TUNED_ADM):
        return "already installed"
    running_before = tuned_pids()
    unit_was_there = TUNED_UNIT_LINK.is_symlink()
    made_policy = not POLICY_RC_D.exists()
    if made_policy:  # invoke-rc.d asks this: 101 = do not start services
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        subprocess.run(["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=300", "tuned"],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                       stdout=subprocess.DEVNULL)
    finally:
        if made_policy:
            POLICY_RC_D.unlink()
    # The package enables tuned.service; this machine did not ask for that.
    if not unit_was_there and TUNED_UNIT_LINK.is_symlink():
        TUNED_UNIT_LINK.unlink()
    for pid in tuned_pids() - running_before:
        os.kill(pid, signal.SIGTERM)
    return "installed with apt-get (tuned.service left disabled, no daemon started)"


def tuned_policy() -> Path:
    for d in TUNED_POLICY_DIRS:
        if (d / "com.redhat.tuned.conf").is_file():
            return d / "com.redhat.tuned.conf"
    raise SystemExit("tuned's bus policy com.redhat.tuned.conf was not found")


# ---- the daemons ------------------------------------------------------------------------

class TunedDaemon:
    """tuned in the foreground on `address`, with private /etc/tuned and /run/tuned."""

    def __init__(self, address: str, base: Path) -> None:
        self.address = address
        self.base = base
        self.log = base / "tuned.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> TunedDaemon:
        etc, run = self.base / "etc-tuned", self.base / "run-tuned"
        shutil.copytree("/etc/tuned", etc)
        run.mkdir()
        # Start with no profile and in manual mode (not the recommended profile).
        (etc / "active_profile").write_text("")
        (etc / "profile_mode").write_text("manual\n")
        (etc / "post_loaded_profile").write_text("")
        conf = etc / "tuned-main.conf"
        lines = [ln for ln in conf.read_text().splitlines()
                 if not ln.replace(" ", "").startswith("reapply_sysctl=")]
        conf.write_text("\n".join([*lines, "reapply_sysctl = 0", ""]))
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        argv = ["unshare", "--mount", "--propagation", "private", "--", "/usr/bin/python3",
                "-c", TUNED_WRAPPER, str(etc), str(run), str(TUNED_BIN),
                "-l", str(self.log), "-P", str(run / "tuned.pid")]
        with (self.base / "tuned.out").open("wb") as out:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=out)
        wait_for_name_sync(self.address, TUNED_NAME, 60, pid=self.proc.pid, died=self._died)
        return self

    def _died(self) -> str | None:
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"tuned exited with {self.proc.returncode}: {_read(self.base / 'tuned.out')}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # tuned unapplies its profile on SIGTERM
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


# ---- timing -------------------------------------------------------------------------

def run_timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace')}")
    return elapsed


class Wire:
    """One dbus-fast connection per daemon, for the daemon-side timings."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.loop = asyncio.new_event_loop()
        self.bus: MessageBus = self.loop.run_until_complete(self._connect())
        self.signals: asyncio.Queue[Message] = asyncio.Queue()
        self.bus.add_message_handler(self._on_message)

    async def _connect(self) -> MessageBus:
        return await MessageBus(bus_address=self.address, bus_type=BusType.SYSTEM).connect()

    def _on_message(self, msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL:
            self.signals.put_nowait(msg)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def call(self, dest: str, path: str, iface: str, member: str, sig: str = "",
                   body: list[Any] | None = None) -> list[Any]:
        reply = await self.bus.call(Message(destination=dest, path=path, interface=iface,
                                            member=member, signature=sig, body=body or []))
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"{member}: {reply.error_name}: {reply.body}")
        return list(reply.body)

    async def match(self, rule: str) -> None:
        await self.call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                        "org.freedesktop.DBus", "AddMatch", "s", [rule])

    async def next_signal(self, want: Callable[[Message], bool], timeout: float = 60) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            msg = await asyncio.wait_for(self.signals.get(), deadline - time.monotonic())
            if want(msg):
                return msg

    async def drain(self) -> None:
        """Forget the signals that arrived while nobody listened (during the client
        processes): a round trip to the bus first, so that all of them are read."""
        await self.call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                        "org.freedesktop.DBus", "GetId")
        while not self.signals.empty():
            self.signals.get_nowait()

    def close(self) -> None:
        self.bus.disconnect()
        self.loop.close()


def tuned_switch(w: Wire, profile: str) -> float:
    """switch_profile (and start, if tuning was off) to the profile_changed signal."""
    async def go() -> float:
        await w.drain()
        t0 = time.perf_counter()
        ((ok, msg),) = await w.call(TUNED_NAME, TUNED_PATH, TUNED_IFACE, "switch_profile",
                                    "s", [profile])
        if not ok:
            raise RuntimeError(f"tuned switch_profile {profile}: {msg}")
        # As tuned-adm does: after `off` the profile is only selected until started.
        (running,) = await w.call(TUNED_NAME, TUNED_PATH, TUNED_IFACE, "is_running")
        if not running:
            (started,) = await w.call(TUNED_NAME, TUNED_PATH, TUNED_IFACE, "start")
            if not started:
                raise RuntimeError("tuned start failed")
        sig = await w.next_signal(lambda m: m.member == "profile_changed")
        elapsed = time.perf_counter() - t0
        if sig.body[0] != profile or not sig.body[1]:
            raise RuntimeError(f"tuned profile_changed: {sig.body}")
        return elapsed
    return float(w.run(go()))


def tuned_disable(w: Wire) -> float:
    async def go() -> float:
        t0 = time.perf_counter()
        (ok,) = await w.call(TUNED_NAME, TUNED_PATH, TUNED_IFACE, "disable")
        if not ok:
            raise RuntimeError("tuned disable failed")
        return time.perf_counter() - t0
    return float(w.run(go()))


def ose_job(w: Wire, member: str, sig: str, body: list[Any]) -> tuple[float, float]:
    """(call to Finished signal, the job's own Started..Finished) in seconds."""
    async def go() -> tuple[float, float]:
        await w.drain()
        t0 = time.perf_counter()
        (path,) = await w.call(OSE_NAME, *OSE_TUNING, member, sig, body)
        await w.next_signal(lambda m: m.path == path and m.member == "Finished")
        elapsed = time.perf_counter() - t0
        (props,) = await w.call(OSE_NAME, path, PROPS, "GetAll", "s", [JOB_IFACE])
        if props["State"].value != "succeeded":
            raise RuntimeError(f"{member} job {props['State'].value}: {props['Error'].value}")
        own = (props["Finished"].value - props["Started"].value) / 1e6
        return elapsed, own
    result: tuple[float, float] = w.run(go())
    return result


def tuned_log_switches(log: Path, offset: int) -> list[float]:
    """TuneD's own account, from its log (millisecond timestamps): "stopping tuning"
    (or "starting tuning" when nothing was active) to "static tuning ... applied"."""
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    out, start = [], None
    for line in lines:
        try:
            ts = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        if ("stopping tuning" in line or "starting tuning" in line) and start is None:
            start = ts
        elif "static tuning from profile" in line and start is not None:
            out.append(ts - start)
            start = None
        elif "terminating TuneD" in line:
            start = None  # `off`: a stop with no apply after it
    return out


# ---- statistics -----------------------------------------------------------------------

def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """min..max and IQR, in ms."""
    if len(xs) < 2:
        return "-"
    q = statistics.quantiles(xs, n=4)
    return f"{min(xs) * 1e3:.0f}..{max(xs) * 1e3:.0f} (IQR {(q[2] - q[0]) * 1e3:.0f})"


# ---- the run --------------------------------------------------------------------------

class Samples(dict[str, list[float]]):
    def add(self, key: str, value: float) -> None:
        self.setdefault(key, []).append(value)


def tuned_round(s: Samples, env: dict[str, str], w: Wire) -> None:
    for i in range(4):
        profile = TUNED_PROFILES[i % 2]
        s.add("tuned proc first" if i == 0 else "tuned proc switch",
              run_timed([TUNED_ADM, "profile", profile], env))
    s.add("tuned proc revert", run_timed([TUNED_ADM, "off"], env))
    for i in range(4):
        s.add("tuned own first" if i == 0 else "tuned own switch",
              tuned_switch(w, TUNED_PROFILES[i % 2]))
    s.add("tuned own revert", tuned_disable(w))


def ose_round(s: Samples, osectl: list[str], env: dict[str, str], w: Wire) -> None:
    for i in range(4):
        profile = OSE_PROFILES[i % 2]
        s.add("ose proc first" if i == 0 else "ose proc switch",
              run_timed([*osectl, "apply", profile], env))
    s.add("ose proc revert", run_timed([*osectl, "revert"], env))
    no_opts: dict[str, Any] = {}
    for i in range(4):
        call, own = ose_job(w, "Apply", "sa{sv}", [OSE_PROFILES[i % 2], no_opts])
        s.add("ose own first" if i == 0 else "ose own switch", call)
        s.add("ose job first" if i == 0 else "ose job switch", own)
    call, own = ose_job(w, "Revert", "", [])
    s.add("ose own revert", call)
    s.add("ose job revert", own)
    for i in range(4):
        call, own = ose_job(w, "Apply", "sa{sv}", [list(MIRROR_PROFILES)[i % 2], no_opts])
        if i:
            s.add("ose mirror switch", call)
    s.add("ose mirror revert", ose_job(w, "Revert", "", [])[0])


def census(apply_a: Callable[[], object], apply_b: Callable[[], object],
           revert: Callable[[], object]) -> tuple[int, int, int]:
    """How many kernel values a tool changes: A from nothing, then switched to B, and how
    many are left different after its revert (should be 0)."""
    base = kernel_snapshot()
    apply_a()
    n_a = len(changed(base, kernel_snapshot()))
    apply_b()
    n_b = len(changed(base, kernel_snapshot()))
    revert()
    return n_a, n_b, len(changed(base, kernel_snapshot()))


def bench_noise(osectl: list[str], env: dict[str, str], invocations: int,
                runs: int) -> dict[str, dict[str, float]]:
    """Run `osectl tune bench --suite quick` several times; per metric: the median, the
    within-invocation spread ((max-min)/median of its runs, as the daemon reports it) and
    the spread of the invocations' medians."""
    json_tune = [*osectl[:-1], "--json", "tune"]
    ids = []
    for _ in range(invocations):
        out = subprocess.run([*json_tune, "bench", "--suite", "quick", "--runs", str(runs)],
                             env=env, capture_output=True, text=True, check=True).stdout
        ids.append(json.loads(out.strip().splitlines()[-1])["id"])
    stored = json.loads(subprocess.run([*json_tune, "benchmarks"], env=env,
                                       capture_output=True, text=True, check=True).stdout)
    results = [next(r for r in stored if r["id"] == i) for i in ids]
    noise: dict[str, dict[str, float]] = {}
    for name in [m["name"] for m in results[0]["metrics"]]:
        ms = [next(m for m in r["metrics"] if m["name"] == name) for r in results]
        medians = [m["median"] for m in ms]
        mid = statistics.median(medians)
        noise[name] = {
            "median": mid, "unit": ms[0]["unit"],
            "within": statistics.median(m["spread"] for m in ms),
            "within_max": max(m["spread"] for m in ms),
            "between": (max(medians) - min(medians)) / mid if mid else 0.0,
            "duration": statistics.median(r["duration"] for r in results),
        }
    return noise


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bench-invocations", type=int, default=3)
    parser.add_argument("--bench-runs", type=int, default=5)
    parser.add_argument("--no-results", action="store_true",
                        help="do not write benchmarks/RESULTS.md")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: both tools tune the real kernel")

    installed = ensure_tuned()
    print(f"tuned: {installed}")
    # As installed packages are: byte-compiled (PYTHONDONTWRITEBYTECODE may be set here).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "osectl"),
                    str(REPO / "oseprovd")], check=True)

    before = kernel_snapshot()
    s = Samples()
    base = Path(tempfile.mkdtemp(prefix="ose-tunebench-"))
    base.chmod(0o755)
    report: dict[str, Any] = {}
    try:
        report = measure(args, base, s)
    finally:
        left = changed(before, kernel_snapshot())
        stuck = restore(before) if left else []
        after = kernel_snapshot()
        print("\nkernel values before -> after the run:")
        b, a = shown(before), shown(after)
        for key in b:
            print(f"  {key:32} {b[key]:>24} -> {a.get(key, '?'):<24}"
                  f"{'' if b[key] == a.get(key) else '  DIFFERENT'}")
        if left:
            print(f"  {len(left)} values were left changed and written back: "
                  + ", ".join(sorted(left)))
        if stuck:
            print("  COULD NOT RESTORE: " + "; ".join(stuck))
        print(f"  {len(before)} values watched; different now: "
              f"{len(changed(before, after))}")
        shutil.rmtree(base, ignore_errors=True)
    report["left_changed"] = sorted(left)
    report["stuck"] = stuck
    text = render(args, s, report)
    print("\n" + text)
    if not args.no_results:
        write_results(text)
        print(f"written to {RESULTS.relative_to(REPO)}")
    return 0


def measure(args: argparse.Namespace, base: Path, s: Samples) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tbus = stack.enter_context(PrivateSystemBus(
            include_project_policy=False, include_polkit_policy=False,
            extra_policy_files=[tuned_policy()]))
        obus = stack.enter_context(PrivateSystemBus(include_polkit_policy=False))
        (base / "tuned").mkdir()
        tuned = TunedDaemon(tbus.address, base / "tuned")
        stack.callback(tuned.stop)
        root = base / "root"
        (root / "etc/security/limits.d").mkdir(parents=True)  # as on a real system
        (root / "etc/ose/tuning-profiles.d").mkdir(parents=True)
        for name, body in MIRROR_PROFILES.items():
            (root / "etc/ose/tuning-profiles.d" / f"{name}.toml").write_text(body)
        (base / "state").mkdir(mode=0o700)
        # The benchmark switches far faster than a person would: lift the per-uid rate
        # limit on changes, which would otherwise answer RateLimited mid-run.
        config = base / "oseprovd.toml"
        config.write_text("[limits]\nrate_per_uid_per_second = 1000\nrate_burst = 1000\n")
        daemon = DaemonProcess(obus.address, base / "state", root,
                               ["--proc-root", "/proc", "--sys-root", "/sys",
                                "--log-level", "info", "--config", str(config)],
                               log_path=base / "oseprovd.log")
        stack.callback(daemon.close)
        t0 = time.perf_counter()
        tuned.start()
        report["tuned_start"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        daemon.start()
        report["ose_start"] = time.perf_counter() - t0
        report["tuned_version"] = subprocess.run(
            [str(TUNED_BIN), "--version"], capture_output=True, text=True,
            check=False).stdout.strip() or "tuned"

        tenv = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=tbus.address)
        oenv = dict(os.environ)
        osectl = [str(Path(sys.executable).parent / "osectl"), "--address", obus.address,
                  "tune"]
        tw, ow = Wire(tbus.address), Wire(obus.address)
        stack.callback(tw.close)
        stack.callback(ow.close)
        tw.run(tw.match(f"type='signal',interface='{TUNED_IFACE}',member='profile_changed'"))
        ow.run(ow.match(f"type='signal',interface='{JOB_IFACE}',member='Finished'"))
        # Whatever happens below, both tools take their profile back off.
        stack.callback(lambda: subprocess.run([TUNED_ADM, "off"], env=tenv, check=False,
                                              capture_output=True))
        stack.callback(lambda: subprocess.run([*osectl, "revert"], env=oenv, check=False,
                                              capture_output=True))

        # Warm-up and census: what each tool changes on this machine.
        report["tuned_census"] = census(
            lambda: run_timed([TUNED_ADM, "profile", TUNED_PROFILES[0]], tenv),
            lambda: run_timed([TUNED_ADM, "profile", TUNED_PROFILES[1]], tenv),
            lambda: run_timed([TUNED_ADM, "off"], tenv))
        report["ose_census"] = census(
            lambda: run_timed([*osectl, "apply", OSE_PROFILES[0]], oenv),
            lambda: run_timed([*osectl, "apply", OSE_PROFILES[1]], oenv),
            lambda: run_timed([*osectl, "revert"], oenv))
        mirror = list(MIRROR_PROFILES)
        report["mirror_census"] = census(
            lambda: run_timed([*osectl, "apply", mirror[0]], oenv),
            lambda: run_timed([*osectl, "apply", mirror[1]], oenv),
            lambda: run_timed([*osectl, "revert"], oenv))
        log_mark = tuned.log.stat().st_size

        for r in range(args.rounds):
            # Interleaved, alternating who goes first, so the machine's noise falls on both.
            order = [tuned_round, ose_round] if r % 2 == 0 else [ose_round, tuned_round]
            for fn in order:
                if fn is tuned_round:
                    tuned_round(s, tenv, tw)
                else:
                    ose_round(s, osectl, oenv, ow)
            print(f"round {r + 1}/{args.rounds} done", flush=True)

        report["tuned_log_switch"] = tuned_log_switches(tuned.log, log_mark)
        floor = [run_timed([sys.executable, "-c", "pass"], oenv) for _ in range(10)]
        report["python_floor"] = med(floor)
        report["tuned_rss"] = rss_mib(tuned.pid)
        report["ose_rss"] = rss_mib(daemon.pid)
        print("built-in benchmark suite ...", flush=True)
        report["bench"] = bench_noise(osectl, oenv, args.bench_invocations, args.bench_runs)
        report["ose_rss_after_bench"] = rss_mib(daemon.pid)
    return report


def render(args: argparse.Namespace, s: Samples, rep: dict[str, Any]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = os.cpu_count()
    lines = [SECTION, "",
             f"Run {now} on {platform.node()} ({cpus} CPUs, kernel {platform.release()}, "
             f"{rep.get('tuned_version', 'tuned')}), {args.rounds} interleaved rounds; "
             "times are medians in ms with min..max and IQR over all samples.",
             "", "| what | TuneD | oseprovd | oseprovd / TuneD |", "|---|---|---|---|"]

    def row(label: str, tkey: str, okey: str) -> None:
        t, o = s.get(tkey, []), s.get(okey, [])
        if not t or not o:
            return
        lines.append(f"| {label} | {med(t) * 1e3:.0f} [{spread(t)}] | "
                     f"{med(o) * 1e3:.0f} [{spread(o)}] | {med(o) / med(t):.2f} |")

    row("(a) whole client process, profile switch", "tuned proc switch", "ose proc switch")
    row("(a) whole client process, first apply", "tuned proc first", "ose proc first")
    row("(b) daemon's own work, switch (call to signal)", "tuned own switch", "ose own switch")
    row("(b) daemon's own work, first apply", "tuned own first", "ose own first")
    row("(b) same work: TuneD's sysctl values as oseprovd profiles, switch",
        "tuned own switch", "ose mirror switch")
    row("(c) whole client process, revert", "tuned proc revert", "ose proc revert")
    row("(c) daemon's own work, revert", "tuned own revert", "ose own revert")
    row("(c) same work, revert", "tuned own revert", "ose mirror revert")
    lines += ["", *METHOD, ""]
    if rep.get("tuned_log_switch"):
        t = rep["tuned_log_switch"]
        lines.append(f"TuneD's log agrees: stop..applied median {med(t) * 1e3:.0f} ms "
                     f"[{spread(t)}] over {len(t)} applies (its timestamps have 1 ms "
                     "resolution).")
    if "ose job switch" in s:
        lines.append(
            "oseprovd's job itself (Started..Finished): switch "
            f"{med(s['ose job switch']) * 1e3:.0f} ms, "
            f"first apply {med(s['ose job first']) * 1e3:.0f} ms, revert "
            f"{med(s['ose job revert']) * 1e3:.0f} ms; `python3 -c pass` on this machine: "
            f"{rep.get('python_floor', 0) * 1e3:.0f} ms.")
    if "tuned_rss" in rep:
        (trss, thwm), (orss, ohwm) = rep["tuned_rss"], rep["ose_rss"]
        lines.append(
            f"(d) resident memory after the rounds: TuneD {trss:.1f} MiB (peak {thwm:.1f}), "
            f"oseprovd {orss:.1f} MiB (peak {ohwm:.1f}); oseprovd after the benchmark suite "
            f"{rep['ose_rss_after_bench'][0]:.1f} MiB (peak {rep['ose_rss_after_bench'][1]:.1f}). "
            f"Daemon start to ready: TuneD {rep['tuned_start']:.2f} s, oseprovd "
            f"{rep['ose_start']:.2f} s.")
    if "tuned_census" in rep:
        ta, tb, tl = rep["tuned_census"]
        oa, ob, ol = rep["ose_census"]
        lines.append(
            f"Work done (kernel values differing from the start, of the ~"
            f"{len(kernel_snapshot())} watched): TuneD {TUNED_PROFILES[0]} {ta}, then "
            f"{TUNED_PROFILES[1]} {tb}, after `tuned-adm off` {tl}; oseprovd "
            f"{OSE_PROFILES[0]} {oa}, then {OSE_PROFILES[1]} {ob}, after revert {ol}; "
            "the same-work pair "
            f"{' / '.join(str(n) for n in rep['mirror_census'])}.")
    lines.append("")
    if s.get("tuned proc switch") and s.get("ose proc switch"):
        ratio = med(s["ose proc switch"]) / med(s["tuned proc switch"])
        own = med(s["ose own switch"]) / med(s["tuned own switch"])
        lines.append(f"Targets: whole `osectl tune apply` / `tuned-adm profile` = {ratio:.2f} "
                     f"(target <= 0.25: {'met' if ratio <= 0.25 else 'NOT met'}); daemon's own "
                     f"switch oseprovd / TuneD = {own:.2f} (target <= 1: "
                     f"{'met' if own <= 1 else 'NOT met'}).")
        lines.append("")
    if "bench" in rep:
        lines += [f"(e) `osectl tune bench --suite quick --runs {args.bench_runs}`, "
                  f"{args.bench_invocations} invocations (each took about "
                  f"{next(iter(rep['bench'].values()))['duration']:.1f} s), no profile active. "
                  "Noise = (max - min) / median; `tune compare` calls a change significant "
                  "only when it exceeds twice the larger noise.", "",
                  "| metric | median | noise within one invocation (median, worst) | "
                  "noise between invocations | smallest significant change |",
                  "|---|---|---|---|---|"]
        for name, n in rep["bench"].items():
            floor = 2 * max(n["within"], n["between"])
            lines.append(f"| {name} | {n['median']:.4g} {n['unit']} | {n['within']:.1%}, "
                         f"{n['within_max']:.1%} | {n['between']:.1%} | {floor:.0%} |")
        lines.append("")
    left = rep.get("left_changed", [])
    lines.append("Host afterwards: " + (
        "every watched kernel value as before the run." if not left else
        f"{len(left)} values were left changed and were written back by the benchmark: "
        + ", ".join(left) + (f"; could not restore: {rep['stuck']}" if rep.get("stuck") else "")))
    lines += ["", "Rerun (root, repository root): "
              "`.venv/bin/python -m benchmarks.tuning [--rounds 5]`.", ""]
    return "\n".join(lines)


METHOD = [
    "How it is measured:",
    "- Both tools tune this machine's real kernel, one at a time, in interleaved rounds "
    "(who goes first alternates). TuneD runs in the foreground (`tuned -l -P`) on its own "
    "private dbus-daemon with its shipped bus policy, in a private mount namespace (its "
    "/etc/tuned and /run/tuned are temporary copies), with `reapply_sysctl = 0`: with it "
    "on, TuneD re-applies /usr/lib/sysctl.d on every switch (kernel.pid_max, "
    "fs.protected_*) and never reverts that. oseprovd runs on a second private bus with "
    "`--proc-root /proc --sys-root /sys` and a temporary `--root` (its limits.d file and "
    "state stay out of the host's /etc). Separate buses, so neither sees the other as a "
    "power manager.",
    "- No polkitd on either bus: both daemons fall back to allowing root. (TuneD 2.20's "
    "polkit query fails on Debian 12 before it is sent, \"Unable to guess signature from "
    "an empty dict\", so it always takes that fallback.)",
    f"- Profiles, alternating so every switch reverts one and applies the other: TuneD "
    f"{' <-> '.join(TUNED_PROFILES)}, oseprovd {' <-> '.join(OSE_PROFILES)}. They do not "
    "change the same things here: ours switch vda's I/O scheduler (the kernel freezes and "
    "drains the queue, ~20 ms per change) and write a limits.d file; TuneD's change the "
    "read-ahead of the loop and zram devices, which ours leave alone by default. The "
    "\"same work\" rows use TuneD's sysctl values as two oseprovd profiles.",
    "- (a) and (c) time the client process from exec to exit. `tuned-adm profile` waits "
    "for the daemon's profile_changed signal in a loop that wakes once a second, hence "
    "~1.1 s for ~10 ms of daemon work; `osectl` follows the job's signals.",
    "- (b) and (c), daemon's own work, from one already-connected client: TuneD "
    "switch_profile (and start, if tuning was off, as tuned-adm does) until its "
    "profile_changed signal, and disable; oseprovd Apply or Revert until the job's "
    "Finished signal. oseprovd journals its whole plan (every original value) in one "
    "fsynced record before the first change and a commit record after the last, and "
    "persists the job in SQLite; TuneD keeps its originals in memory and flushes nothing.",
    "- Every writable value under /proc/sys/{vm,net/core,net/ipv4,kernel,fs} and the "
    "block, THP and cpufreq attributes is snapshotted before the run, compared after it "
    "and written back if anything was left.",
]

HEADER = """# Benchmark results

Side-by-side measurements of this project against the tools it replaces, made on the
development machine: a shared, noisy 2-core VM. Absolute times move from run to run;
read the medians, the spreads and above all the ratios, which both sides share.
Each section is rewritten by the script named in its title.

"""


def write_results(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else HEADER
    if SECTION in old:
        head, _, rest = old.partition(SECTION)
        nxt = rest.find("\n## ")
        old = head + (rest[nxt + 1:] if nxt >= 0 else "")
    RESULTS.write_text(old.rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    sys.exit(main())
