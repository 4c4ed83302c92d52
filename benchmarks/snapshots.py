"""Snapshot engine timings against the raw tools, on loop images made here.

btrfs: `SnapshotEngine.create_snapshot` and `delete_snapshots` against
`btrfs subvolume snapshot -r` / `btrfs subvolume delete` on the same subvolume, at
several tree sizes (constant time is the claim); file-level undo of a 20-file change.
copy backend (ext4 and xfs): saving and restoring a 20-file change in the same trees,
against `cp -a --reflink=auto` and `rsync -aHAX` of the whole tree (cost must follow the
change, not the tree). Medians of several rounds; ratios are what to read.

    .venv/bin/python -m benchmarks.snapshots [--sizes 10000,100000] [--rounds 7]

Run as root from the repository root. The engine is called directly; the D-Bus side is
benchmarks/snapshots_bus.py, snapper side by side benchmarks/snapper_side_by_side.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from oseprovd.snapshots.btrfs_backend import BtrfsBackend
from oseprovd.snapshots.copy_backend import CopyBackend
from oseprovd.snapshots.engine import SnapshotEngine
from oseprovd.snapshots.journal import FileJournal
from oseprovd.snapshots.models import SnapshotConfig
from oseprovd.snapshots.repository import SqliteSnapshotRepository, ensure_schema

CHANGED = 20


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextmanager
def loop_fs(work: Path, fstype: str, size_mb: int) -> Iterator[Path]:
    img = work / f"{fstype}.img"
    mnt = work / f"{fstype}-mnt"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(size_mb << 20)
    flags = {"btrfs": ["-q", "-f"], "ext4": ["-q", "-F"], "xfs": ["-q", "-f"]}[fstype]
    run(f"mkfs.{fstype}", *flags, "--", str(img))
    dev = subprocess.run(["losetup", "-f", "--show", "--", str(img)], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        run("mount", "-o", "noatime", "--", dev, str(mnt))
        try:
            yield mnt
        finally:
            run("umount", "--", str(mnt))
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        img.unlink()


def make_tree(root: Path, files: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    per_dir = 1000
    for i in range(files):
        d = root / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(exist_ok=True)
        (d / f"f{i}").write_bytes(b"x" * (i % 2000))


def change(root: Path, n: int = CHANGED) -> list[str]:
    paths = [f"d0000/f{i}" for i in range(n)]
    for p in paths:
        (root / p).write_bytes(b"changed")
    return paths


def median_ms(fn: Callable[[], object], rounds: int,
              setup: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(rounds):
        if setup is not None:
            setup()
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def engine_for(work: Path, cfg: SnapshotConfig) -> SnapshotEngine:
    conn = sqlite3.connect(work / f"{cfg.name}.db", isolation_level=None)
    ensure_schema(conn)
    return SnapshotEngine({cfg.name: cfg}, SqliteSnapshotRepository(conn),
                          {"btrfs": BtrfsBackend(), "copy": CopyBackend()},
                          FileJournal(work / f"{cfg.name}.journal"))


def _btrfs_row(work: Path, mnt: Path, n: int, rounds: int) -> str:
    name = f"t{n}"
    run("btrfs", "subvolume", "create", "--", str(mnt / name))
    make_tree(mnt / name, n)
    cfg = SnapshotConfig(name=name, backend="btrfs", path=mnt / name,
                         snapshot_dir=mnt / f".snap-{name}")
    engine = engine_for(work, cfg)
    made: list[str] = []
    create = median_ms(lambda: made.append(engine.create_snapshot(name).id), rounds)
    delete = median_ms(lambda: engine.delete_snapshots([made.pop()]), rounds)
    raw_dir = mnt / f".raw-{name}"
    raw_dir.mkdir()
    k = iter(range(10**6))
    raw_made: list[Path] = []

    def raw_create() -> None:
        p = raw_dir / str(next(k))
        run("btrfs", "subvolume", "snapshot", "-r", "--", str(mnt / name), str(p))
        raw_made.append(p)

    raw_c = median_ms(raw_create, rounds)
    raw_d = median_ms(lambda: run("btrfs", "subvolume", "delete", "--",
                                  str(raw_made.pop())), rounds)
    snap = engine.create_snapshot(name)
    paths = [f"d0000/f{i}" for i in range(CHANGED)]
    undo = median_ms(lambda: engine.undo(snap.id, paths), rounds,
                     setup=lambda: change(mnt / name))
    return (f"| {n} | {create:.1f} ms | {raw_c:.1f} ms | {create / raw_c:.2f} | "
                 f"{delete:.1f} ms | {raw_d:.1f} ms | {undo:.1f} ms |")


def bench_btrfs(work: Path, sizes: list[int], rounds: int) -> list[str]:
    lines = ["| files | engine create | `btrfs subvolume snapshot -r` | ratio | "
             "engine delete | `btrfs subvolume delete` | undo 20 files |",
             "|---|---|---|---|---|---|---|"]
    with loop_fs(work, "btrfs", max(1024, sum(sizes) // 100)) as mnt:
        for n in sizes:
            lines.append(_btrfs_row(work, mnt, n, rounds))
    return lines


def _copy_row(work: Path, mnt: Path, n: int, rounds: int) -> str:
    name = f"c{n}"
    tree = mnt / name
    make_tree(tree, n)
    cfg = SnapshotConfig(name=name, backend="copy", path=tree,
                         snapshot_dir=mnt / f".store-{name}")
    engine = engine_for(work, cfg)

    def save_restore() -> None:
        rec = engine.create_snapshot(name)
        paths = [f"d0000/f{i}" for i in range(CHANGED)]
        engine.will_change(rec.id, paths)
        change(tree)
        engine.rollback(rec.id)
        engine.delete_snapshots([rec.id])

    ours = median_ms(save_restore, rounds)
    dst = mnt / "copy-dst"

    def clear() -> None:
        if dst.exists():
            shutil.rmtree(dst)

    cp = median_ms(lambda: run("cp", "-a", "--reflink=auto", "--", str(tree),
                               str(dst)), max(1, rounds // 3), setup=clear)
    rsync = "n/a"
    if shutil.which("rsync"):
        ms = median_ms(lambda: run("rsync", "-aHAX", "--", f"{tree}/", str(dst)),
                       max(1, rounds // 3), setup=clear)
        rsync = f"{ms:.0f} ms"
    clear()
    return f"| {n} | {ours:.1f} ms | {cp:.0f} ms | {rsync} |"


def bench_copy(work: Path, fstype: str, sizes: list[int], rounds: int) -> list[str]:
    lines = [f"| {fstype} files | save+restore 20 files | `cp -a --reflink=auto` tree | "
             "`rsync -aHAX` tree |", "|---|---|---|---|"]
    with loop_fs(work, fstype, max(2048, sum(sizes) // 10)) as mnt:
        for n in sizes:
            lines.append(_copy_row(work, mnt, n, rounds))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="ose-bench-") as tmp:
        work = Path(tmp)
        print("\n".join(["## btrfs", *bench_btrfs(work, sizes, args.rounds), ""]),
              flush=True)
        for fstype in ("ext4", "xfs"):
            rows = bench_copy(work, fstype, sizes, args.rounds)
            print("\n".join([f"## copy backend on {fstype}", *rows, ""]), flush=True)
    print(f"\n(kernel {os.uname().release}, {os.cpu_count()} CPUs, medians of "
          f"{args.rounds} rounds)")


if __name__ == "__main__":
    main()
