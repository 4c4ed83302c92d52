"""snapper (Debian's package, its snapperd) side by side with oseprovd: create and undo.

Both daemons run on one private system bus (tests.harness.sysbus, with snapper's own bus
policy file added), oseprovd with the real polkitd. snapperd runs in a private mount
namespace (`unshare --mount --propagation private`) where temporary dirs are
bind-mounted over /etc/snapper and /etc/default/snapper, so its config
(`snapper -c bench create-config`) never touches the host's. One btrfs loop image holds
two subvolumes with the same tree of N files: `snp` for snapper, `ose` for oseprovd
(inside the daemon's --root). The image is mounted before snapperd's namespace is made,
so both see it; snapperd is stopped before it is unmounted.

Measured, medians, the two tools alternating round by round:
  - a public read, whole process: `snapper list` vs `osectl snapshot list` (what
    starting each client costs);
  - create, whole process: `snapper -c bench create` vs `osectl snapshot create`;
  - create, the raw D-Bus call from a connected client: snapperd's CreateSingleSnapshot
    vs our CreateSnapshot;
  - undo of the same 20-file change, whole process: `snapper undochange N..M` (N before
    the change, M after it) vs `osectl snapshot undo ID PATHS...` (waits for the job);
  - undo, D-Bus: our UndoChange job (call to Finished signal) with the 20 paths (in a
    pair with another `snapper undochange`) and with "." (the whole tree: it finds the
    changes itself, as undochange does); their ratios are against undochange's median.
Snapshots are deleted between rounds (not timed).

    .venv/bin/python -m benchmarks.snapper_side_by_side [--files 10000] [--rounds 15]

Run as root from the repository root. Needs the snapper package (apt-get install
snapper); this script neither installs it nor enables any of its units or timers.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dbus_fast import Message, MessageType

from benchmarks.snapshots import change, loop_fs, make_tree, run
from tests.harness.busclient import BusError, call, connect, wait_for_name_sync
from tests.harness.daemon import DaemonProcess
from tests.harness.polkit import PolkitDaemon
from tests.harness.sysbus import PrivateSystemBus

NAME = "org.ose.Provisioning1"
SNAPS = ("/org/ose/Provisioning1/Snapshots", "org.ose.Snapshots1")
SNAPPER = ("org.opensuse.Snapper", "/org/opensuse/Snapper", "org.opensuse.Snapper")
SNAPPER_POLICY = [Path(d) / "org.opensuse.Snapper.conf"
                  for d in ("/usr/share/dbus-1/system.d", "/etc/dbus-1/system.d")]
SNAPPERD = "/usr/sbin/snapperd"
CONFIG = "bench"
PATHS = [f"d0000/f{i}" for i in range(20)]

# Runs inside the new mount namespace: bind the temp config places, then be snapperd.
NS_SCRIPT = """
import os, subprocess, sys
etc, default = sys.argv[1], sys.argv[2]
for src, dst in ((etc, "/etc/snapper"), (default, "/etc/default/snapper")):
    subprocess.run(["mount", "--bind", "--", src, dst], check=True)
os.execv(sys.argv[3], [sys.argv[3]])
"""


def ms(t: float) -> float:
    return (time.perf_counter() - t) * 1000


@contextmanager
def snapperd(base: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    etc = base / "etc-snapper"
    (etc / "configs").mkdir(parents=True)
    default = base / "default-snapper"
    default.write_text('SNAPPER_CONFIGS=""\nDISABLE_APT_SNAPSHOT="yes"\n')
    log = (base / "snapperd.log").open("wb")
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", sys.executable, "-c",
         NS_SCRIPT, str(etc), str(default), SNAPPERD],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        # snapperd is D-Bus activated normally; here it claims its name once it runs.
        wait_for_name_sync(env["DBUS_SYSTEM_BUS_ADDRESS"], SNAPPER[0], 15,
                           pid=proc.pid, died=lambda: None if proc.poll() is None
                           else (base / "snapperd.log").read_text())
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Bench:
    def __init__(self, address: str, mnt: Path, env: dict[str, str], rounds: int) -> None:
        self.address = address
        self.mnt = mnt
        self.env = env
        self.rounds = rounds
        self.osectl = [sys.executable, "-m", "osectl.main", "--address", address, "--json",
                       "snapshot"]

    def snapper(self, *args: str) -> str:
        return subprocess.run(["snapper", "-c", CONFIG, *args], env=self.env, check=True,
                              capture_output=True, text=True).stdout

    def ose(self, *args: str) -> str:
        return subprocess.run([*self.osectl, *args], check=True, capture_output=True,
                              text=True).stdout

    async def run(self) -> dict[str, tuple[list[float], list[float]]]:
        bus = await connect(self.address)
        finished: dict[str, asyncio.Future[None]] = {}

        def on_message(msg: Message) -> None:
            if msg.message_type == MessageType.SIGNAL and msg.member == "Finished":
                fut = finished.setdefault(msg.path, asyncio.get_running_loop().create_future())
                if not fut.done():
                    fut.set_result(None)

        bus.add_message_handler(on_message)
        await call(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                   "org.freedesktop.DBus", "AddMatch", "s",
                   ["type='signal',interface='org.ose.Job1',member='Finished'"])

        async def ours(member: str, sig: str, *body: Any) -> Any:
            return (await call(bus, NAME, *SNAPS, member, sig, list(body)))[0]

        async def theirs(member: str, sig: str, *body: Any) -> Any:
            reply = await call(bus, *SNAPPER, member, sig, list(body))
            return reply[0] if reply else None

        async def snapper_delete(*nums: int) -> None:
            # snapperd drops the CLI's comparison when it sees the CLI leave the bus,
            # which may come after our call: "snapshot_in_use" until then (not timed).
            for _ in range(100):
                try:
                    await theirs("DeleteSnapshots", "sau", CONFIG, list(nums))
                    return
                except BusError as exc:
                    if "snapshot_in_use" not in exc.name:
                        raise
                    await asyncio.sleep(0.02)
            raise RuntimeError(f"snapperd kept snapshots {nums} in use")

        async def undo_job(snap: str, paths: list[bytes]) -> None:
            path = await ours("UndoChange", "saay", snap, paths)
            fut = finished.setdefault(path, asyncio.get_running_loop().create_future())
            await asyncio.wait_for(fut, 60)

        res: dict[str, tuple[list[float], list[float]]] = {
            k: ([], []) for k in ("cli_read", "cli_create", "dbus_create", "cli_undo",
                                  "dbus_undo_paths", "dbus_undo_all")}
        try:
            for i in range(self.rounds):
                order: list[Callable[[], Any]] = []
                # -- a public read, whole process: the client's own start-up cost
                async def snapper_read() -> None:
                    t = time.perf_counter()
                    self.snapper("list")
                    res["cli_read"][0].append(ms(t))

                async def ose_read() -> None:
                    t = time.perf_counter()
                    self.ose("list", "ose")
                    res["cli_read"][1].append(ms(t))

                # -- whole-process create
                async def snapper_cli() -> None:
                    t = time.perf_counter()
                    num = self.snapper("create", "-p", "-d", "bench").strip()
                    res["cli_create"][0].append(ms(t))
                    await theirs("DeleteSnapshots", "sau", CONFIG, [int(num)])

                async def ose_cli() -> None:
                    t = time.perf_counter()
                    out = self.ose("create", "ose", "--description", "bench")
                    res["cli_create"][1].append(ms(t))
                    snap = out.split('"id": "', 1)[1].split('"', 1)[0]
                    await ours("DeleteSnapshots", "as", [snap])

                # -- raw D-Bus create
                async def snapper_dbus() -> None:
                    t = time.perf_counter()
                    num = await theirs("CreateSingleSnapshot", "sssa{ss}", CONFIG, "bench",
                                       "", {})
                    res["dbus_create"][0].append(ms(t))
                    await theirs("DeleteSnapshots", "sau", CONFIG, [num])

                async def ose_dbus() -> None:
                    t = time.perf_counter()
                    snap = await ours("CreateSnapshot", "ssa{ss}", "ose", "bench", {})
                    res["dbus_create"][1].append(ms(t))
                    await ours("DeleteSnapshots", "as", [snap])

                # -- undo of the same 20-file change
                async def snapper_undo() -> None:
                    pre = await theirs("CreateSingleSnapshot", "sssa{ss}", CONFIG, "pre", "",
                                       {})
                    change(self.mnt / "snp")
                    post = await theirs("CreateSingleSnapshot", "sssa{ss}", CONFIG, "post",
                                        "", {})
                    t = time.perf_counter()
                    self.snapper("undochange", f"{pre}..{post}")
                    res["cli_undo"][0].append(ms(t))
                    assert (self.mnt / "snp" / PATHS[1]).read_bytes() == b"x", "not undone"
                    await snapper_delete(pre, post)

                async def ose_undo(kind: str) -> None:
                    snap = await ours("CreateSnapshot", "ssa{ss}", "ose", "pre", {})
                    change(self.mnt / "ose")
                    t = time.perf_counter()
                    if kind == "cli":
                        self.ose("undo", snap, *PATHS)
                        res["cli_undo"][1].append(ms(t))
                    elif kind == "paths":
                        await undo_job(snap, [p.encode() for p in PATHS])
                        res["dbus_undo_paths"][1].append(ms(t))
                    else:
                        await undo_job(snap, [b"."])
                        res["dbus_undo_all"][1].append(ms(t))
                    assert (self.mnt / "ose" / PATHS[1]).read_bytes() == b"x", "not undone"
                    await ours("DeleteSnapshots", "as", [snap])

                # undochange runs twice a round: once beside the whole osectl process,
                # once beside the UndoChange job, so each pair sees the same load
                pairs = [(snapper_read, ose_read), (snapper_cli, ose_cli), (snapper_dbus, ose_dbus),
                         (snapper_undo, lambda: ose_undo("cli")),
                         (snapper_undo, lambda: ose_undo("paths"))]
                for a, b in pairs:
                    order = [a, b] if i % 2 == 0 else [b, a]  # who goes first alternates
                    for fn in order:
                        await fn()
                await ose_undo("all")
        finally:
            bus.disconnect()
        return res


def bench(base: Path, address: str, files: int, rounds: int) -> list[str]:
    root, state = base / "root", base / "state"
    (root / "srv").mkdir(parents=True)
    state.mkdir(mode=0o700)
    etc = root / "etc/ose/snapshots.d"
    etc.mkdir(parents=True)
    (etc / "ose.toml").write_text('backend = "btrfs"\npath = "/srv/btrfs-mnt/ose"\n'
                                  'snapshot_dir = "/srv/btrfs-mnt/.snap-ose"\n')
    env = {"DBUS_SYSTEM_BUS_ADDRESS": address, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8"}
    with loop_fs(root / "srv", "btrfs", max(1024, files // 50)) as mnt:
        for sub in ("ose", "snp"):
            run("btrfs", "subvolume", "create", "--", str(mnt / sub))
            make_tree(mnt / sub, files)
        run("sync")
        conf = base / "oseprovd.toml"
        conf.write_text("[limits]\nrate_per_uid_per_second = 10000\nrate_burst = 100000\n")
        daemon = DaemonProcess(address, state, root,
                               ["--snapshot-timer", "0", "--config", str(conf)],
                               log_path=base / "oseprovd.log")
        daemon.start()
        try:
            with snapperd(base, env):
                b = Bench(address, mnt, env, rounds)
                b.snapper("create-config", "--", str(mnt / "snp"))
                # Comparisons are computed when asked for, as ours are.
                b.snapper("set-config", "BACKGROUND_COMPARISON=no", "TIMELINE_CREATE=no")
                res = asyncio.run(b.run())
                for sv in ("snp/.snapshots",):
                    run("btrfs", "subvolume", "delete", "--", str(mnt / sv))
        finally:
            daemon.close()
    return table(res, files)


def table(res: dict[str, tuple[list[float], list[float]]], files: int) -> list[str]:
    names = {
        "cli_read": ("list snapshots, whole process", "`snapper -c bench list`",
                     "`osectl snapshot list`"),
        "cli_create": ("create, whole process", "`snapper -c bench create`",
                       "`osectl snapshot create`"),
        "dbus_create": ("create, D-Bus call", "CreateSingleSnapshot", "CreateSnapshot"),
        "cli_undo": ("undo 20 files, whole process", "`snapper undochange N..M`",
                     "`osectl snapshot undo ID PATHS`"),
        "dbus_undo_paths": ("undo 20 files, D-Bus job", "", "UndoChange(20 paths)"),
        "dbus_undo_all": ("undo 20 files, D-Bus job", "", "UndoChange(\".\")"),
    }
    lines = [f"| {files} files | snapper | ms | oseprovd | ms | ose / snapper |",
             "|---|---|---|---|---|---|"]
    for key, (what, sn, ose) in names.items():
        a, b = res[key]
        mb = statistics.median(b)
        if a:
            ma = statistics.median(a)
            lines.append(f"| {what} | {sn} | {ma:.1f} | {ose} | {mb:.1f} | {mb / ma:.2f} |")
        else:  # the undo jobs: against snapper's undochange of the same rounds
            ma = statistics.median(res["cli_undo"][0])
            lines.append(f"| {what} | (`snapper undochange`) | {ma:.1f} | {ose} | {mb:.1f} "
                         f"| {mb / ma:.2f} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    if shutil.which("snapper") is None or not os.access(SNAPPERD, os.X_OK):
        sys.exit("snapper is not installed: apt-get install snapper")
    policy = next((f for f in SNAPPER_POLICY if f.is_file()), None)
    if policy is None:
        sys.exit("snapper's bus policy org.opensuse.Snapper.conf was not found")
    base = Path(tempfile.mkdtemp(prefix="ose-bench-snapper-"))
    base.chmod(0o755)
    try:
        with PrivateSystemBus(extra_policy_files=[policy]) as bus, PolkitDaemon(bus.address):
            lines = bench(base, bus.address, args.files, args.rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "snapper"],
                             capture_output=True, text=True).stdout
    print("\n".join(lines))
    print(f"\n(snapper {version}, kernel {os.uname().release}, {os.cpu_count()} CPUs, "
          f"medians of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
