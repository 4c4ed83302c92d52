"""CreateSnapshot over D-Bus against the raw `btrfs subvolume snapshot -r`, same subvolume.

The real oseprovd on a private system bus with the real polkitd (the call is authorized
by polkit each time, as root), a btrfs loop image inside the daemon's --root, a tree of
N files. Measured, medians of several rounds:
  - `btrfs subvolume snapshot -r` run as a process (the issue's "raw command");
  - CreateSnapshot from a connected client (journal fsync, SQLite insert, polkit);
  - `osectl snapshot create` as a whole process (what a user waits for).
Snapshots are deleted between rounds (not timed). The issue's target: CreateSnapshot at
most 2x the raw command.

    .venv/bin/python -m benchmarks.snapshots_bus [--sizes 10000,100000] [--rounds 15]

Run as root from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.snapshots import loop_fs, make_tree, median_ms, run
from tests.harness.busclient import call, connect
from tests.harness.daemon import DaemonProcess
from tests.harness.polkit import PolkitDaemon
from tests.harness.sysbus import PrivateSystemBus

NAME = "org.ose.Provisioning1"
SNAPS = ("/org/ose/Provisioning1/Snapshots", "org.ose.Snapshots1")


def bench(base: Path, address: str, sizes: list[int], rounds: int) -> list[str]:
    root, state = base / "root", base / "state"
    (root / "srv").mkdir(parents=True)
    state.mkdir(mode=0o700)
    etc = root / "etc/ose/snapshots.d"
    etc.mkdir(parents=True)
    for n in sizes:
        (etc / f"t{n}.toml").write_text(
            f'backend = "btrfs"\npath = "/srv/btrfs-mnt/t{n}"\n'
            f'snapshot_dir = "/srv/btrfs-mnt/.snap-t{n}"\n')
    lines = ["| files | `btrfs subvolume snapshot -r` | CreateSnapshot (D-Bus) | ratio | "
             "GetSnapshot (public read) | `osectl snapshot create` |",
             "|---|---|---|---|---|---|"]
    with loop_fs(root / "srv", "btrfs", max(1024, sum(sizes) // 100)) as mnt:
        for n in sizes:
            run("btrfs", "subvolume", "create", "--", str(mnt / f"t{n}"))
            make_tree(mnt / f"t{n}", n)
        # The per-uid rate limit (5/s) would throttle a tight loop of calls.
        conf = base / "oseprovd.toml"
        conf.write_text("[limits]\nrate_per_uid_per_second = 10000\nrate_burst = 100000\n")
        daemon = DaemonProcess(address, state, root,
                               ["--snapshot-timer", "0", "--config", str(conf)],
                               log_path=base / "oseprovd.log")
        daemon.start()
        try:
            for n in sizes:
                lines.append(_row(address, mnt, n, rounds))
        finally:
            daemon.close()
    return lines


def _row(address: str, mnt: Path, n: int, rounds: int) -> str:
    """Raw command, D-Bus call and a public read alternate round by round, so the load
    of a shared machine falls on all of them alike."""
    config = f"t{n}"
    raw_dir = mnt / f".raw-{config}"
    raw_dir.mkdir()
    raw_snap = raw_dir / "s"

    async def measure() -> tuple[list[float], list[float], list[float]]:
        bus = await connect(address)
        raw, create, read = [], [], []
        try:
            for _ in range(rounds):
                t = time.perf_counter()
                run("btrfs", "subvolume", "snapshot", "-r", "--", str(mnt / config),
                    str(raw_snap))
                raw.append((time.perf_counter() - t) * 1000)
                run("btrfs", "subvolume", "delete", "--", str(raw_snap))
                t = time.perf_counter()
                (snap,) = await call(bus, NAME, *SNAPS, "CreateSnapshot", "ssa{ss}",
                                     [config, "bench", {}])
                create.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                await call(bus, NAME, *SNAPS, "GetSnapshot", "s", [snap])
                read.append((time.perf_counter() - t) * 1000)
                await call(bus, NAME, *SNAPS, "DeleteSnapshots", "as", [[snap]])
        finally:
            bus.disconnect()
        return raw, create, read

    raw, create, read = (statistics.median(x) for x in asyncio.run(measure()))
    osectl = [sys.executable, "-m", "osectl.main", "--address", address, "--json",
              "snapshot", "create", config]
    made: list[str] = []

    def cli() -> None:
        out = subprocess.run(osectl, check=True, capture_output=True, text=True).stdout
        made.append(out.split('"id": "', 1)[1].split('"', 1)[0])

    def cleanup() -> None:
        if made:
            run(sys.executable, "-m", "osectl.main", "--address", address, "snapshot",
                "delete", "--yes", made.pop())

    cli_ms = median_ms(cli, min(rounds, 7), setup=cleanup)
    cleanup()
    return (f"| {n} | {raw:.1f} ms | {create:.1f} ms | {create / raw:.2f} | "
            f"{read:.1f} ms | {cli_ms:.0f} ms |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="ose-bench-snapbus-"))
    base.chmod(0o755)
    try:
        with PrivateSystemBus() as bus, PolkitDaemon(bus.address):
            lines = bench(base, bus.address, sizes, args.rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("\n".join(lines))
    print(f"\n(kernel {os.uname().release}, {os.cpu_count()} CPUs, medians of "
          f"{args.rounds} rounds)")


if __name__ == "__main__":
    main()
