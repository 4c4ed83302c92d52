"""osectl recovery's guard against a running daemon, over a fake /proc; and the module
stays free of the bus library (it must work where D-Bus does not)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from osectl.recovery import DEFAULT_STATE, daemons_on


def fake_proc(tmp_path: Path, procs: dict[int, list[str]]) -> Path:
    proc = tmp_path / "proc"
    for pid, argv in procs.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (proc / "self").mkdir()
    return proc


def test_a_daemon_on_the_same_state_dir_is_found(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    proc = fake_proc(tmp_path, {
        101: ["/usr/bin/python3", "-m", "oseprovd", "--state-dir", str(state)],
        102: ["/usr/sbin/oseprovd", f"--state-dir={state}"],
        103: ["/usr/bin/python3", "-m", "oseprovd", "--state-dir", str(tmp_path / "other")],
        104: ["/usr/bin/vim", "oseprovd", "--state-dir", str(state)],
        105: ["/usr/sbin/oseprovd"],  # default state dir
    })
    assert sorted(daemons_on(state, proc)) == [101, 102]
    assert daemons_on(DEFAULT_STATE, proc) == [105]


def test_recovery_imports_no_bus_library() -> None:
    code = ("import sys, osectl.recovery, oseprovd.engines, oseprovd.reset.engine; "
            "sys.exit('dbus_fast' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
