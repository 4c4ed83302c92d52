"""The light profile against BleachBit's --preview of comparable cleaners, on the
same lived-in root (run from benchmarks/reset.py --bleachbit; see RESULTS-reset.md).

BleachBit has no --root: it cleans the running system and $HOME. So this re-runs
itself in a private mount namespace (`unshare --mount --propagation private`: the
host never sees the mounts) and bind-mounts the lived-in root's /tmp, /var/tmp,
/var/log and /var/cache/apt over the real ones, with HOME set to alice's home there.
Both sides then look at the same files, interleaved round after round.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from oseprovd.reset.baseline import FileBaselineRepository
from oseprovd.reset.engine import ResetEngine
from oseprovd.reset.models import Selection
from oseprovd.reset.planstore import PlanStore
from oseprovd.system.rootfs import TargetRoot

CLEANERS = ("apt.clean", "apt.autoclean", "system.cache", "system.tmp",
            "system.rotated_logs", "thumbnails.cache")
BINDS = ("tmp", "var/tmp", "var/log", "var/cache/apt")
DAY = 86400
_FILES = re.compile(r"^Files to be deleted: (\d+)", re.M)
_SPACE = re.compile(r"^Disk space to be recovered: (\S+)", re.M)


def ensure_bleachbit() -> str:
    """apt-get install bleachbit if it is missing (idempotent)."""
    found = shutil.which("bleachbit")
    if found:
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                    "bleachbit"], check=True, env=env, stdin=subprocess.DEVNULL)
    found = shutil.which("bleachbit")
    if not found:
        raise SystemExit("bleachbit is not installed and apt-get could not install it")
    return found


def _files(d: Path, n: int, size: int, uid: int, age_days: float = 0) -> None:
    d.mkdir(parents=True, exist_ok=True)
    data = b"x" * size
    t = time.time() - age_days * DAY
    for k in range(n):
        p = d / f"f{k:05d}"
        p.write_bytes(data)
        if uid:
            os.chown(p, uid, uid)
        if age_days:
            os.utime(p, (t, t))
    if uid:
        os.chown(d, uid, uid)


def build(root: Path, files: int) -> None:
    """tests/unit/reset/livedin's root, plus `files` more spread like a desktop's:
    half in alice's ~/.cache (1/10 of them thumbnails), a quarter in /var/tmp, an
    eighth old files in /tmp, the rest rotated logs and cached .debs."""
    from tests.unit.reset.livedin import build as livedin_build
    livedin_build(root)
    home = root / "home/alice"
    per = 500
    for i in range(max(1, files // 2 // per)):
        sub = "thumbnails/large" if i % 10 == 0 else f"app{i:03d}/data"
        _files(home / ".cache" / sub / f"b{i:03d}", per, 2000, 1000)
    for i in range(max(1, files // 4 // per)):
        _files(root / "var/tmp" / f"build{i:03d}", per, 1000, 0, age_days=3)
    _files(root / "tmp/old-downloads", max(1, files // 8), 1000, 0, age_days=30)
    logs = root / "var/log"
    for i in range(max(1, files // 16)):
        (logs / f"svc{i:05d}.log.1").write_bytes(b"l" * 500)
    arch = root / "var/cache/apt/archives"
    for i in range(max(1, files // 16)):
        (arch / f"pkg{i:05d}_1.0_all.deb").write_bytes(b"d" * 3000)


def _areas(out: str, home: Path) -> dict[str, int]:
    """bleachbit's listed paths per area (the bound trees and $HOME)."""
    areas = {f"/{b}": 0 for b in BINDS} | {"~/.cache": 0, "other": 0}
    for line in out.splitlines():
        path = line.split(" ", 2)[-1] if line.startswith("Delete") else ""
        if not path.startswith("/"):
            continue
        if path.startswith(f"{home}/.cache/"):
            areas["~/.cache"] += 1
            continue
        for b in BINDS:
            if path.startswith(f"/{b}/"):
                areas[f"/{b}"] += 1
                break
        else:
            areas["other"] += 1
    return areas


def _bleachbit(exe: str, home: Path) -> tuple[float, int, str, str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8"}
    t = time.perf_counter()
    r = subprocess.run([exe, "--preview", *CLEANERS], capture_output=True, text=True,
                       env=env, check=False, stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t
    m, s = _FILES.search(r.stdout), _SPACE.search(r.stdout)
    if r.returncode != 0 or m is None:
        raise SystemExit(f"bleachbit failed ({r.returncode}): {r.stderr[-500:]}")
    return dt, int(m.group(1)), s.group(1) if s else "?", r.stdout


def inner(base: Path, rounds: int) -> dict[str, object]:
    """In the private mount namespace: binds, then interleaved rounds."""
    root = base / "root"
    for rel in BINDS:
        subprocess.run(["mount", "--bind", "--", str(root / rel), f"/{rel}"], check=True)
    exe = ensure_bleachbit()
    home = root / "home/alice"
    engine = ResetEngine(TargetRoot(root), PlanStore(base / "state/reset.db"),
                         FileBaselineRepository(base / "state"), None, workers=1)
    sel = Selection(profile="light")
    try:
        a = engine.analyze(sel)  # warm caches both ways
        _, bb_count, bb_space, out = _bleachbit(exe, home)
        files_by_rule = {k: v.count for k, v in a.by_rule.items()}
        t_ours, t_bb, t_start = [], [], []
        for _ in range(rounds):
            t = time.perf_counter()
            a = engine.analyze(sel)
            t_ours.append(time.perf_counter() - t)
            t_bb.append(_bleachbit(exe, home)[0])
            t = time.perf_counter()
            subprocess.run([exe, "--version"], capture_output=True, check=True,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
            t_start.append(time.perf_counter() - t)
    finally:
        engine.close()
    return {"ours": t_ours, "bleachbit": t_bb, "bleachbit_start": t_start,
            "ours_count": a.totals.count, "ours_bytes": a.totals.bytes,
            "by_rule": files_by_rule, "bb_areas": _areas(out, home),
            "bb_count": bb_count, "bb_space": bb_space,
            "load": os.getloadavg()[0]}


def side_by_side(files: int, rounds: int) -> None:
    ensure_bleachbit()
    # not under /tmp: /tmp itself is bound over in the namespace
    scratch = Path("/var/cache/ose-tests")
    scratch.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="bench-bb-", dir=scratch))
    try:
        (base / "state").mkdir()
        t = time.perf_counter()
        build(base / "root", files)
        print(f"built the lived-in root (+{files} files) in {time.perf_counter() - t:.1f} s")
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                            sys.executable, "-m", "benchmarks.reset_bleachbit", "--inner",
                            str(base), str(rounds)], capture_output=True, text=True,
                           check=False)
        if r.returncode != 0:
            raise SystemExit(f"inner run failed: {r.stderr[-1500:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ours, bb, start = res["ours"], res["bleachbit"], res["bleachbit_start"]
    ratios = [o / b for o, b in zip(ours, bb, strict=True)]
    net = [o / max(b - s, 1e-6) for o, b, s in zip(ours, bb, start, strict=True)]
    print(f"\nload average {res['load']:.2f}; {rounds} interleaved rounds; cleaners: "
          f"{' '.join(CLEANERS)}\n")
    print("| what | median (s) | found |")
    print("|---|---|---|")
    print(f"| Analyze light (1 process) | {statistics.median(ours):.3f} | "
          f"{res['ours_count']} entries, {res['ours_bytes']} bytes allocated |")
    print(f"| bleachbit --preview | {statistics.median(bb):.3f} | {res['bb_count']} files, "
          f"{res['bb_space']} |")
    print(f"| bleachbit --version (its start-up) | {statistics.median(start):.3f} | |")
    print(f"\nmedian of per-round ratios: Analyze / bleachbit = {statistics.median(ratios):.2f}; "
          f"Analyze / (bleachbit - its start-up) = {statistics.median(net):.2f}")
    print(f"light, entries by rule (files and directories): {res['by_rule']}")
    print(f"bleachbit, files by area: {res['bb_areas']}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--inner":
        print(json.dumps(inner(Path(sys.argv[2]), int(sys.argv[3]))))
    else:
        raise SystemExit("run through: python -m benchmarks.reset --bleachbit")
