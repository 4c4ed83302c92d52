"""The Textual UI of `osectl reset select`, headless (App.run_test), driven by key
presses against a stand-in for the daemon that records the calls it gets. (The daemon
side is tests/integration/test_reset_bus.py; the UI on the real daemon is
tests/integration/test_reset_select.py.)"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.components import missing

HAVE_TEXTUAL = importlib.util.find_spec("textual") is not None
if HAVE_TEXTUAL:
    from textual.widgets import Static

    from osectl.reset_select import PlanTree, ResetSelectApp


@pytest.fixture(autouse=True)
def _textual() -> None:
    if not HAVE_TEXTUAL:  # skipped locally, a failure under CI=true
        missing("textual is not installed (pip install textual): osectl reset select")

ROWS = [  # (path, bytes, class, rule), path order as the daemon gives
    ("home/u/.cache/thumbs/a.png", 3000, "cache", "user-cache"),
    ("home/u/.cache/thumbs/b.png", 5000, "cache", "user-cache"),
    ("var/cache/apt/archives/x.deb", 70000, "cache", "apt-cache"),
    ("var/log/syslog.1", 11000, "log", "old-logs"),
]


class FakeDaemon:
    """Preview/GetPlanItems/Execute as org.ose.Reset1 answers them: each Preview is a
    new plan of the rows its exclude_paths leave."""

    def __init__(self, rows: list[tuple[str, int, str, str]] | None = None) -> None:
        self.rows = ROWS if rows is None else rows
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.plans: dict[str, list[tuple[str, int, str, str]]] = {}
        self.results: dict[int, dict[str, Any]] = {}

    def call(self, path: str, interface: str, member: str, signature: str = "",
             body: list[Any] | tuple[Any, ...] = (), timeout: float | None = None) -> Any:
        self.calls.append((member, tuple(body)))
        if member == "Preview":
            ex = body[0].get("exclude_paths", [])
            rows = [r for r in self.rows if not any(r[0] == p or r[0].startswith(p + "/")
                                               for p in ex)]
            pid = f"p{len(self.plans)}"
            self.plans[pid] = rows
            by: dict[str, dict[str, int]] = {}
            for r in rows:
                t = by.setdefault(r[2], {"count": 0, "bytes": 0})
                t["count"] += 1
                t["bytes"] += r[1]
            plan = {"id": pid, "digest": f"d-{pid}", "item_count": len(rows),
                    "highest_risk": "safe", "analysis": {
                        "totals": {"count": len(rows), "bytes": sum(r[1] for r in rows)},
                        "by_class": by}}
            return self._job(plan)
        if member == "GetPlanItems":
            pid, offset, limit = body
            return [{"path": os.fsencode(p).decode("utf-8", "backslashreplace"),
                     "path_bytes": os.fsencode(p), "bytes": b, "size": b, "cls": c,
                     "rule": r, "kind": "file", "risk": "safe"}
                    for p, b, c, r in self.plans[pid][offset:offset + limit]]
        if member == "Execute":
            pid, digest, _ = body
            assert digest == f"d-{pid}"
            rows = self.plans[pid]
            return self._job({"removed": len(rows), "removed_bytes": sum(r[1] for r in rows),
                              "skipped_count": 0, "execution": "e1"})
        raise AssertionError(member)

    def _job(self, result: dict[str, Any]) -> str:
        n = len(self.results) + 1
        self.results[n] = result
        return f"/org/ose/Provisioning1/job/{n}"

    def watch_job(self, job_id: int) -> Iterator[dict[str, Any]]:
        yield {"State": "running", "Progress": 0.5, "StatusText": "half"}
        yield {"State": "succeeded", "Progress": 1.0, "Result": self.results[job_id]}


def totals_text(app: Any) -> str:
    return str(app.query_one("#totals", Static).render())


async def settle(app: Any, pilot: Any) -> None:
    await app.workers.wait_for_complete()
    await pilot.pause()


def test_unticking_a_rule_changes_the_totals_and_the_preview_excludes_it() -> None:
    async def go() -> None:
        fake = FakeDaemon()
        app = ResetSelectApp(fake, {"profile": "light"})
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            assert "ticked:  4 items" in totals_text(app)
            tree = app.query_one(PlanTree)
            # root -> cache (expanded on enter) -> apt-cache
            tree.move_cursor(tree.root.children[0])
            await pilot.press("enter")
            await pilot.pause()
            rules = [c.label.plain for c in tree.root.children[0].children]
            assert any("apt-cache" in r for r in rules), rules
            await pilot.press("down")  # apt-cache is first (sorted)
            await pilot.press("space")
            await pilot.pause()
            text = totals_text(app)
            assert "ticked:  3 items" in text, text
            assert "[ ] apt-cache" in str(tree.root.children[0].children[0].label)
            await pilot.press("x")
            await settle(app, pilot)
            previews = [b[0] for m, b in fake.calls if m == "Preview"]
            assert previews[-1] == {"profile": "light", "exclude_paths": ["var/cache"]}
            await pilot.press("y")  # the confirmation
            await settle(app, pilot)
            execute = [b for m, b in fake.calls if m == "Execute"]
            assert execute == [("p1", "d-p1", {})]
            assert app.result is not None and app.result["removed"] == 3
            await pilot.press("q")
    asyncio.run(go())


def test_saying_no_executes_nothing_and_retick_restores_totals() -> None:
    async def go() -> None:
        fake = FakeDaemon()
        app = ResetSelectApp(fake, {"profile": "light"})
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            tree = app.query_one(PlanTree)
            tree.move_cursor(tree.root.children[1])  # log
            await pilot.press("space")
            assert "ticked:  3 items" in totals_text(app)
            await pilot.press("x")
            await settle(app, pilot)
            await pilot.press("x")  # on the question: no second plan
            await settle(app, pilot)
            assert [m for m, _ in fake.calls].count("Preview") == 2
            await pilot.press("n")
            await settle(app, pilot)
            assert not [m for m, _ in fake.calls if m == "Execute"]
            assert [b[0] for m, b in fake.calls if m == "Preview"][-1]["exclude_paths"] \
                == ["var/log"]
            tree.move_cursor(tree.root.children[1])
            await pilot.press("space")
            assert "ticked:  4 items" in totals_text(app)
            tree.move_cursor(tree.root)  # the plan line: everything off
            await pilot.press("space", "x")
            await settle(app, pilot)
            assert "ticked:  0 items" in totals_text(app)
            assert [m for m, _ in fake.calls].count("Preview") == 2
    asyncio.run(go())


def test_a_preview_the_daemon_refuses_ends_the_ui_with_its_error() -> None:
    from osectl.errors import CliError

    class Refusing(FakeDaemon):
        def call(self, path: str, interface: str, member: str, signature: str = "",
                 body: list[Any] | tuple[Any, ...] = (), timeout: float | None = None) -> Any:
            raise CliError("org.freedesktop.DBus.Error.AccessDenied", "not allowed", 4)

    async def go() -> Any:
        app = ResetSelectApp(Refusing(), {"profile": "light"})
        async with app.run_test() as pilot:
            await settle(app, pilot)
        return app

    app = asyncio.run(go())
    assert isinstance(app.error, CliError) and app.error.exit_code == 4
    assert app.model is None


def test_the_confirmation_shows_each_class_before_and_after_once() -> None:
    from osectl.reset_select import summary

    def plan(pid: str, by: dict[str, tuple[int, int]]) -> dict[str, Any]:
        return {"id": pid, "highest_risk": "safe", "analysis": {
            "totals": {"count": sum(c for c, _ in by.values()),
                       "bytes": sum(b for _, b in by.values())},
            "by_class": {k: {"count": c, "bytes": b} for k, (c, b) in by.items()}}}

    text = summary(plan("p0", {"cache": (3, 3072), "log": (1, 1024), "odd": (1, 1)}),
                   plan("p1", {"cache": (2, 2048), "log": (1, 1024)})).plain
    lines = text.splitlines()
    assert [ln.split()[0] for ln in lines[1:-1]] == ["cache", "log", "odd", "total"]
    assert lines[1].split() == ["cache", "3", "3.0", "KiB", "2", "2.0", "KiB"]
    assert lines[4].split()[:2] == ["total", "5"] and lines[4].split()[4] == "3"
    assert lines[-1] == "plan p1, highest risk safe"


def test_a_name_that_is_not_utf8_shows_escaped_and_is_left_out_with_its_directory() -> None:
    rows = [("tmp/d/" + os.fsdecode(b"\xff.bin"), 10, "temp", "tmp"),
            ("tmp/d/ok", 20, "temp", "tmp"), ("tmp/e", 5, "temp", "tmp")]

    async def go() -> None:
        fake = FakeDaemon(rows)
        app = ResetSelectApp(fake, {"profile": "light"})
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            tree = app.query_one(PlanTree)
            for _ in range(5):  # each level's lines appear once its parent is open
                for line in list(app._walk(tree.root)):
                    line.expand()
                await pilot.pause()
            lines = {line.label.plain.split("  ")[0][4:]: line for line in app._walk(tree.root)}
            assert "\\xff.bin" in lines, sorted(lines)
            tree.move_cursor(lines["\\xff.bin"])
            await pilot.press("space", "x")
            await settle(app, pilot)
            assert "UTF-8" in str(app.query_one("#status", Static).render())
            assert [m for m, _ in fake.calls].count("Preview") == 1
            tree.move_cursor(lines["d"])
            await pilot.press("space", "space")  # d: some -> all ticked -> none
            await pilot.press("x")  # the whole directory can be said
            await settle(app, pilot)
            assert [b[0] for m, b in fake.calls if m == "Preview"][-1]["exclude_paths"] \
                == ["tmp/d"]
    asyncio.run(go())
