"""A stand-in for oseprovd that honours the harness contract (same flags, owns the bus
name, exits 0 on SIGTERM). It lets the harness be tested without the real daemon.

Extra flags: --stub-exit N (exit with N before owning the name), --stub-ignore-term.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from dbus_fast import BusType
from dbus_fast.aio import MessageBus

BUS_NAME = "org.ose.Provisioning1"


async def main(args: argparse.Namespace) -> int:
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    starts = state / "starts"
    starts.write_text(str(int(starts.read_text() or 0) + 1 if starts.exists() else 1))
    print(f"stub: root={args.root} log-level={args.log_level}", flush=True)
    if args.stub_exit is not None:
        print("stub: failing on purpose", flush=True)
        return int(args.stub_exit)
    bus = await MessageBus(bus_address=args.bus, bus_type=BusType.SYSTEM).connect()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if args.stub_ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    await bus.request_name(BUS_NAME)
    print(f"stub: owning {BUS_NAME} as {bus.unique_name}", flush=True)
    await stop.wait()
    print("stub: SIGTERM, exiting", flush=True)
    bus.disconnect()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    for flag in ("--bus", "--state-dir", "--root", "--log-level"):
        p.add_argument(flag, required=True)
    p.add_argument("--stub-exit", type=int)
    p.add_argument("--stub-ignore-term", action="store_true")
    sys.exit(asyncio.run(main(p.parse_args())))
