"""Reset engine timings: Analyze of a 200k-file tree against `du -s` on the same tree.

The tree is the light profile's /var/tmp of a sandbox root (so Analyze walks exactly
it): 40 directories x 25 subdirectories x 200 small files (+ the directories). Both
sides run with a warm dentry/inode cache (one unmeasured run first); medians of
several rounds. Also: Preview (which stores every item in SQLite and hashes them) and
the raw scan without the engine around it.

    .venv/bin/python -m benchmarks.reset [--files 200000] [--rounds 7] [--keep DIR]
    .venv/bin/python -m benchmarks.reset --bleachbit [--files 40000] [--rounds 7]

Run as root from the repository root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from oseprovd.reset.baseline import FileBaselineRepository
from oseprovd.reset.engine import ResetEngine
from oseprovd.reset.models import Selection
from oseprovd.reset.planstore import PlanStore
from oseprovd.system.rootfs import TargetRoot


def build(root: Path, files: int) -> None:
    top, sub = 40, 25
    per = max(1, files // (top * sub))
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    data = b"x" * 100
    for i in range(top):
        for j in range(sub):
            d = root / "var/tmp" / f"d{i:03d}" / f"s{j:03d}"
            d.mkdir(parents=True, exist_ok=True)
            for k in range(per):
                fd = os.open(d / f"f{k:04d}", os.O_WRONLY | os.O_CREAT, 0o644)
                os.write(fd, data)
                os.close(fd)


def median_time(fn: Callable[[], object], rounds: int) -> float:
    fn()  # warm
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--keep", type=Path, default=None,
                    help="build (or reuse) the tree here instead of a temp dir")
    ap.add_argument("--bleachbit", action="store_true",
                    help="instead: light on a lived-in root against BleachBit's --preview "
                         "(installs bleachbit with apt-get if missing)")
    ap.add_argument("--execute", action="store_true",
                    help="also time Execute + Rollback (copy store) on a copy of the tree")
    args = ap.parse_args()
    if args.bleachbit:
        from benchmarks.reset_bleachbit import side_by_side
        side_by_side(min(args.files, 40_000) if args.files == 200_000 else args.files,
                     args.rounds)
        return
    base = args.keep or Path(tempfile.mkdtemp(prefix="ose-bench-reset-"))
    root = base / "root"
    if not (root / "var/tmp").exists():
        t = time.perf_counter()
        build(root, args.files)
        print(f"built {args.files} files in {time.perf_counter() - t:.1f} s")
    tree = root / "var/tmp"
    state = base / "state"
    state.mkdir(exist_ok=True)
    count = sum(len(fs) + len(ds) for _, ds, fs in os.walk(tree))
    sel = Selection(profile="light")
    du = shutil.which("du") or "du"
    engines = {w: ResetEngine(TargetRoot(root), PlanStore(state / f"reset{w}.db"),
                              FileBaselineRepository(state), None, workers=w)
               for w in (1, 2)}
    runs: dict[str, Callable[[], object]] = {
        "du -s": lambda: subprocess.run([du, "-s", "--", str(tree)], check=True,
                                        capture_output=True),
        "Analyze light, 1 process": lambda: engines[1].analyze(sel),
        "Analyze light, 2 processes": lambda: engines[2].analyze(sel),
    }
    try:
        for fn in runs.values():
            fn()  # warm caches and start the worker processes
        # interleaved rounds: on a shared machine every side sees the same load, and
        # the per-round ratio is what compares them
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.rounds):
            for what, fn in runs.items():
                t = time.perf_counter()
                fn()
                times[what].append(time.perf_counter() - t)
        t_pv = median_time(lambda: engines[2].preview(sel), max(3, args.rounds // 3))
    finally:
        for e in engines.values():
            e.close()
    print(f"\ntree: {count} entries under {tree}; load average {os.getloadavg()[0]:.2f}\n")
    print("| what | median (s) | median of per-round ratios to du -s |")
    print("|---|---|---|")
    for what, ts in times.items():
        ratios = [t / d for t, d in zip(ts, times["du -s"], strict=True)]
        print(f"| {what} | {statistics.median(ts):.3f} | {statistics.median(ratios):.2f} |")
    print(f"| Preview light (items stored + hashed), 2 processes | {t_pv:.3f} | "
          f"{t_pv / statistics.median(times['du -s']):.2f} |")
    if args.execute:
        execute_rollback(base, root, sel)
    if args.keep is None:
        shutil.rmtree(base)


def execute_rollback(base: Path, root: Path, sel: Selection) -> None:
    """Preview, Execute and Rollback with the copy store, on a scratch copy."""
    import sqlite3

    from oseprovd.reset.models import ExecuteOptions
    from oseprovd.snapshots.copy_backend import CopyBackend
    from oseprovd.snapshots.engine import SnapshotEngine
    from oseprovd.snapshots.journal import FileJournal
    from oseprovd.snapshots.models import SnapshotConfig
    from oseprovd.snapshots.repository import SqliteSnapshotRepository, ensure_schema

    scratch = base / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    subprocess.run(["cp", "-a", "--", str(root), str(scratch / "root")], check=True)
    sroot = scratch / "root"
    conn = sqlite3.connect(scratch / "snap.db", isolation_level=None,
                           check_same_thread=False)
    ensure_schema(conn)
    cfg = SnapshotConfig(name="root", backend="copy", path=sroot,
                         snapshot_dir=scratch / "store")
    snaps = SnapshotEngine({"root": cfg}, SqliteSnapshotRepository(conn),
                           {"copy": CopyBackend()}, FileJournal(scratch / "snap.jsonl"))
    (scratch / "state").mkdir()
    engine = ResetEngine(TargetRoot(sroot), PlanStore(scratch / "state/reset.db"),
                         FileBaselineRepository(scratch / "state"), snaps, workers=2,
                         state_dir=scratch / "state")
    journal = FileJournal(scratch / "reset.jsonl")
    try:
        t = time.perf_counter()
        plan = engine.preview(sel)
        t_pv = time.perf_counter() - t
        t = time.perf_counter()
        r = engine.execute(plan.id, plan.digest, ExecuteOptions(), journal)
        t_ex = time.perf_counter() - t
        t = time.perf_counter()
        engine.rollback(r.execution, journal)
        t_rb = time.perf_counter() - t
    finally:
        engine.close()
    print(f"\nExecute/Rollback of {plan.item_count} items (copy store, same fs):")
    print(f"| preview {t_pv:.2f} s | execute {t_ex:.2f} s (removed {r.removed}) | "
          f"rollback {t_rb:.2f} s |")
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
