"""`osectl reset select` against the real daemon, bus and polkitd on a lived-in sandbox
root, driven headlessly through Textual's Pilot: untick one directory, execute, and
check with os.walk that exactly the planted items outside it are gone. The truth is
what tests/unit/reset/livedin.py planted, never the daemon's report."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from osectl.client import Client
from tests.harness.components import REPO_ROOT, missing
from tests.unit.reset.livedin import LivedIn, all_paths, build

pytestmark = pytest.mark.root

UNTICK = "home/alice/.cache/mozilla"


@pytest.fixture
def rig(ose_daemon) -> Iterator[tuple[Any, LivedIn]]:  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("textual") is None:
        missing("textual is not installed (pip install textual): osectl reset select")
    d = ose_daemon.start(start=False, extra_args=["--snapshot-timer", "0"])
    tree = build(d.root)
    d.start()
    yield d, tree


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def test_unticking_a_directory_keeps_exactly_it(rig) -> None:  # type: ignore[no-untyped-def]
    from osectl.reset_select import PlanTree, ResetSelectApp

    daemon, tree = rig
    root, planted = daemon.root, tree.light_removes
    assert any(under(p, UNTICK) for p in planted)
    before = all_paths(root)
    client = Client(daemon.bus_address, interactive=False)

    async def go() -> dict[str, Any] | None:
        app = ResetSelectApp(client, {"profile": "light"})
        async with app.run_test(size=(140, 50)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.model is not None, str(app.query_one("#status").render())
            target = next(n for n in app.model.walk() if n.path == UNTICK)
            # The lines from the top down to it, opened one by one (lazy children).
            chain = []
            n = target
            while n.parent is not None:
                chain.append(n)
                n = n.parent
            plan_tree = app.query_one(PlanTree)
            line = plan_tree.root
            for node in reversed(chain):
                line.expand()
                await pilot.pause()
                line = next(c for c in line.children if c.data is node)
            plan_tree.move_cursor(line)
            await pilot.pause()
            await pilot.press("space")
            await pilot.pause()
            # the node's items are exactly what was planted under it
            assert {app.model.items[i].path for i in target.members} == \
                {p for p in planted if under(p, UNTICK)}
            await pilot.press("x")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.last_plan.get("item_count") == \
                len([p for p in planted if not under(p, UNTICK)])
            await pilot.press("y")
            await app.workers.wait_for_complete()
            await pilot.pause()
            result = app.result
            await pilot.press("q")
        return result

    try:
        result = asyncio.run(go())
    finally:
        client.close()
    assert result is not None and result["skipped_count"] == 0
    gone = {p for p in planted if not under(p, UNTICK)}
    assert all_paths(root) == before - gone
    assert all((root / p).exists() or (root / p).is_symlink()
               for p in planted if under(p, UNTICK))


def test_the_command_in_a_terminal_quits_without_executing(rig) -> None:  # type: ignore[no-untyped-def]
    """`osectl reset select` itself, in a pseudo-terminal: the plan shows, q leaves,
    nothing is removed."""
    daemon, _ = rig
    before = all_paths(daemon.root)
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40",
           "PYTHONPATH": str(REPO_ROOT)}  # this checkout's osectl, not an installed one
    proc = subprocess.Popen(
        [sys.executable, "-m", "osectl.main", "--address", daemon.bus_address,
         "--no-ask-password", "reset", "select"],
        stdin=follower, stdout=follower, stderr=follower, env=env, start_new_session=True)
    os.close(follower)
    seen = b""

    def read_until(marker: bytes, timeout: float) -> bool:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(leader, 65536)
                except OSError:
                    return marker in seen
            if marker in seen:
                return True
        return False

    try:
        assert read_until(b"ticked:", 60), seen[-2000:]
        os.write(leader, b"q")
        read_until(b"nothing executed", 20)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    assert b"nothing executed" in seen and b"Traceback" not in seen
    assert all_paths(daemon.root) == before
