"""Bus round trips: oseprovd's Manager.GetStatus beside the bus daemon's own GetId.

On one private bus, in one run: the floor (org.freedesktop.DBus.GetId, answered by
dbus-daemon itself), oseprovd's GetStatus, and a minimal echo server on dbus-fast and on
dbus-next (the library choice). Each is measured sequentially and with 32 calls in
flight, over several rounds; medians and ratios are printed, never one absolute time.
Then the whole client process: `osectl status --json` against `python3 -c pass`.

    .venv/bin/python -m benchmarks.bus_roundtrip [--rounds 5] [--calls 2000]

Run as root from the repository root (it starts a private bus and the daemon).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from tests.harness.daemon import DaemonProcess
from tests.harness.sysbus import PrivateSystemBus

OSE = ("org.ose.Provisioning1", "/org/ose/Provisioning1", "org.ose.Manager1", "GetStatus")
FLOOR = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId")
ECHO_IFACE = "org.ose.BenchEcho"
ECHO_PATH = "/org/ose/BenchEcho"

# A minimal server, the same on both libraries: one method returning a small a{sv}.
ECHO_SERVER = """
import asyncio, sys
LIB = sys.argv[1]
if LIB == "fast":
    from dbus_fast.aio import MessageBus
    from dbus_fast.service import ServiceInterface, method
    from dbus_fast import Variant
else:
    from dbus_next.aio import MessageBus
    from dbus_next.service import ServiceInterface, method
    from dbus_next import Variant

class Echo(ServiceInterface):
    def __init__(self):
        super().__init__("org.ose.BenchEcho")

    @method()
    async def GetStatus(self) -> "a{sv}":
        return {"version": Variant("s", "0"), "jobs_running": Variant("x", 0)}

async def main():
    bus = await MessageBus(bus_address=sys.argv[2]).connect()
    bus.export("/org/ose/BenchEcho", Echo())
    print(bus.unique_name, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def sequential(bus: MessageBus, target: tuple[str, ...], calls: int) -> list[float]:
    dest, path, iface, member = target
    latencies = []
    for _ in range(calls):
        t0 = time.perf_counter()
        reply = await bus.call(Message(destination=dest, path=path, interface=iface,
                                       member=member))
        latencies.append(time.perf_counter() - t0)
        assert reply is not None and reply.message_type == MessageType.METHOD_RETURN, reply
    return latencies


async def in_flight(bus: MessageBus, target: tuple[str, ...], calls: int,
                    depth: int = 32) -> tuple[float, list[float]]:
    dest, path, iface, member = target
    latencies: list[float] = []
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            reply = await bus.call(Message(destination=dest, path=path, interface=iface,
                                           member=member))
            latencies.append(time.perf_counter() - t0)
            assert reply is not None and reply.message_type == MessageType.METHOD_RETURN

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(depth)))
    return calls / (time.perf_counter() - t0), latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(address: str, targets: dict[str, tuple[str, ...]], rounds: int,
                  calls: int) -> dict[str, dict[str, float]]:
    bus = await MessageBus(bus_address=address).connect()
    samples: dict[str, dict[str, list[float]]] = {
        name: {"seq_rate": [], "seq_p50": [], "seq_p99": [], "par_rate": [], "par_p50": [],
               "par_p99": []} for name in targets}
    for target in targets.values():  # warm up: caches, credentials, imports
        await sequential(bus, target, 200)
    for _ in range(rounds):
        # Interleaved, so that the machine's noise falls on every target alike.
        for name, target in targets.items():
            t0 = time.perf_counter()
            lat = await sequential(bus, target, calls)
            s = samples[name]
            s["seq_rate"].append(calls / (time.perf_counter() - t0))
            s["seq_p50"].append(pct(lat, 0.5))
            s["seq_p99"].append(pct(lat, 0.99))
            rate, lat = await in_flight(bus, target, calls * 2)
            s["par_rate"].append(rate)
            s["par_p50"].append(pct(lat, 0.5))
            s["par_p99"].append(pct(lat, 0.99))
    bus.disconnect()
    return {name: {k: statistics.median(v) for k, v in s.items()}
            for name, s in samples.items()}


def process_times(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--process-runs", type=int, default=30)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="ose-bench-"))
    (base / "root").mkdir()
    # The echo servers are reached by unique name; the system bus policy must let calls
    # to their interface through, as the project's policy does for oseprovd.
    echo_policy = (f'<busconfig><policy context="default"><allow send_interface="{ECHO_IFACE}"/>'
                   "</policy></busconfig>")
    with PrivateSystemBus(extra_policy_xml=[echo_policy]) as sysbus:
        daemon = DaemonProcess(sysbus.address, base / "state", base / "root",
                               log_path=base / "oseprovd.log").start()
        servers = {}
        try:
            targets: dict[str, tuple[str, ...]] = {"floor: bus GetId": FLOOR,
                                                   "oseprovd GetStatus": OSE}
            for lib in ("fast", "next"):
                proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, lib,
                                         sysbus.address], stdout=subprocess.PIPE, text=True)
                assert proc.stdout is not None
                unique = proc.stdout.readline().strip()
                servers[lib] = proc
                targets[f"echo on dbus-{lib}"] = (unique, ECHO_PATH, ECHO_IFACE, "GetStatus")
            results = asyncio.run(measure(sysbus.address, targets, args.rounds, args.calls))

            # As installed packages are: byte-compiled (this machine may set
            # PYTHONDONTWRITEBYTECODE, which would make every start recompile osectl).
            repo = Path(__file__).resolve().parent.parent
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(repo / "osectl"),
                            str(repo / "oseprovd")], check=True)
            osectl = [str(Path(sys.executable).parent / "osectl"), "--address",
                      sysbus.address, "--json", "status"]
            env = dict(os.environ)
            floor_runs, osectl_runs = [], []
            for _ in range(args.process_runs // 5):  # interleaved batches
                floor_runs += process_times([sys.executable, "-c", "pass"], 5, env)
                osectl_runs += process_times(osectl, 5, env)
            status = Path(f"/proc/{daemon.pid}/status").read_text().splitlines()
            rss_kib = int(next(line.split()[1] for line in status
                               if line.startswith("VmRSS:")))
        finally:
            for proc in servers.values():
                proc.terminate()
                proc.wait()
            daemon.close()

    floor = results["floor: bus GetId"]
    print(f"{'target':24} {'seq calls/s':>11} {'p50 µs':>8} {'p99 µs':>8} "
          f"{'32-deep calls/s':>15} {'p50 µs':>8} {'p99 µs':>8}")
    for name, r in results.items():
        print(f"{name:24} {r['seq_rate']:11.0f} {r['seq_p50'] * 1e6:8.0f} "
              f"{r['seq_p99'] * 1e6:8.0f} {r['par_rate']:15.0f} {r['par_p50'] * 1e6:8.0f} "
              f"{r['par_p99'] * 1e6:8.0f}")
    ose = results["oseprovd GetStatus"]
    print()
    print(f"GetStatus p50 / floor p50 (sequential): {ose['seq_p50'] / floor['seq_p50']:.2f}x "
          "(target <= 2)")
    print(f"GetStatus calls/s / floor calls/s (sequential): "
          f"{ose['seq_rate'] / floor['seq_rate']:.2f} (target >= 0.45)")
    print(f"GetStatus calls/s / floor calls/s (32 in flight): "
          f"{ose['par_rate'] / floor['par_rate']:.2f}")
    fast, nxt = results["echo on dbus-fast"], results["echo on dbus-next"]
    print(f"echo dbus-fast / dbus-next calls/s (sequential): "
          f"{fast['seq_rate'] / nxt['seq_rate']:.2f}x; (32 in flight): "
          f"{fast['par_rate'] / nxt['par_rate']:.2f}x")
    f_med, o_med = statistics.median(floor_runs), statistics.median(osectl_runs)
    print(f"process: python3 -c pass median {f_med * 1e3:.1f} ms, osectl status --json median "
          f"{o_med * 1e3:.1f} ms: {o_med / f_med:.2f}x (target <= 5)")
    print(f"oseprovd resident memory after the run: {rss_kib / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
