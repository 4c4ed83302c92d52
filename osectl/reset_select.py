"""`osectl reset select`: pick a reset plan item by item in a terminal UI (Textual).

Preview with the given selection, load the plan's items into a tree (class -> rule ->
directories -> items; children are added when a line is opened), tick and untick with
the space key, then `x`: a new Preview with the unticked paths excluded (a new plan and
digest), its totals next to the first plan's, and on `y` Execute of exactly that plan
(its id and digest) with the job's progress. The data side is reset_select_model.

The client is anything with osectl.client.Client's `call` and `watch_job`: the UI test
drives it with a stand-in for the daemon.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, ProgressBar, Static, Tree
from textual.widgets.tree import TreeNode

from osectl.errors import EXIT_FAILED, CliError
from osectl.render import FORMATTERS
from osectl.reset_select_model import (
    CLASS_ORDER,
    Node,
    SelectionError,
    SelectModel,
    Totals,
    item_from_dbus,
)
from oseprovd.bus.names import IFACE_RESET, SERVICE_PATHS

PATH = SERVICE_PATHS[IFACE_RESET]
PAGE = 5000  # the daemon's largest page
MARK = {"all": "[x] ", "none": "[ ] ", "some": "[-] "}
RISK_STYLE = {"safe": "green", "caution": "yellow", "destructive": "bold red"}


class ResetClient(Protocol):
    def call(self, path: str, interface: str, member: str, signature: str = "",
             body: list[Any] | tuple[Any, ...] = (), timeout: float | None = None) -> Any: ...

    def watch_job(self, job_id: int) -> Iterator[dict[str, Any]]: ...


def size(n: int) -> str:
    return str(FORMATTERS["bytes"](n))


def _plan_totals(plan: dict[str, Any]) -> tuple[Totals, dict[str, Totals]]:
    a = plan.get("analysis") or {}
    tot = a.get("totals") or {}
    by = {k: Totals(int(v.get("count", 0)), int(v.get("bytes", 0)))
          for k, v in (a.get("by_class") or {}).items() if v and v.get("count")}
    return Totals(int(tot.get("count", 0)), int(tot.get("bytes", 0))), by


def summary(before: dict[str, Any], after: dict[str, Any]) -> Text:
    """The first plan and the plan of the ticks, side by side, per class."""
    (tb, bb), (ta, ba) = _plan_totals(before), _plan_totals(after)
    out = Text()
    out.append(f"{'':8} {'before':>22} {'after':>22}\n", style="bold")
    for cls in [c for c in CLASS_ORDER if c in bb or c in ba] + sorted(
            (set(bb) | set(ba)) - set(CLASS_ORDER)):
        b, a = bb.get(cls, Totals()), ba.get(cls, Totals())
        out.append(f"{cls:8} {b.count:>7} {size(b.bytes):>14} {a.count:>7} "
                   f"{size(a.bytes):>14}\n")
    out.append(f"{'total':8} {tb.count:>7} {size(tb.bytes):>14} {ta.count:>7} "
               f"{size(ta.bytes):>14}\n", style="bold")
    for d in after.get("disk") or []:
        out.append(f"{d.get('filesystem', '')}: used {size(int(d.get('used_before', 0)))}"
                   f" now, {size(int(d.get('used_after', 0)))} after\n")
    out.append(f"plan {after.get('id', '')}, highest risk {after.get('highest_risk', '')}")
    return out


class PlanTree(Tree[Node]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "tick", "Tick/untick"),
    ]

    def action_tick(self) -> None:
        app = self.app
        if isinstance(app, ResetSelectApp):
            app.tick_cursor()


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Execute"),
        Binding("n,escape", "answer(False)", "Back"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    #confirm { width: 80; height: auto; border: thick $warning; padding: 1 2;
               background: $surface; }
    """

    def __init__(self, text: Text) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(self.text, id="summary")
            yield Static(Text("Remove these items, behind a rollback point? y = execute, "
                              "n = back", style="bold"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ResetSelectApp(App[dict[str, Any] | None]):
    TITLE = "osectl reset select"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("x", "execute", "Execute…"),
        Binding("q", "quit", "Quit"),
    ]
    DEFAULT_CSS = """
    #tree { width: 2fr; }
    #side { width: 1fr; min-width: 36; padding: 0 1; }
    #progress { display: none; }
    #status { height: auto; }
    """

    def __init__(self, client: ResetClient, base: dict[str, Any]) -> None:
        super().__init__()
        self.client = client
        self.base = base
        self.model: SelectModel | None = None
        self.plan: dict[str, Any] = {}
        self.last_plan: dict[str, Any] = {}  # the plan of the ticks, once made
        self.result: dict[str, Any] | None = None
        self.error: Exception | None = None  # what osectl reports after the UI ends
        self.busy = False
        self._shown: dict[int, TreeNode[Node]] = {}  # id(model node) -> its line

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield PlanTree("plan", id="tree")
            with Vertical(id="side"):
                yield Static("", id="totals")
                yield ProgressBar(total=1.0, id="progress", show_eta=False)
                yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(PlanTree).focus()
        self.run_worker(self._load(), exclusive=True)

    # --- talking to the daemon (blocking calls, run in a thread) ------------------------

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(Text(text))

    def _progress(self, props: dict[str, Any]) -> None:
        bar = self.query_one(ProgressBar)
        bar.display = True
        bar.update(progress=float(props.get("Progress", 0.0)))
        if props.get("StatusText"):
            self._status(str(props["StatusText"]))

    def _follow(self, path: str) -> dict[str, Any]:
        """In a thread: follow the job to its end; its Result, or a CliError with the
        job's own error name (as osectl.context.follow_job)."""
        last: dict[str, Any] = {}
        for props in self.client.watch_job(int(path.rsplit("/", 1)[1])):
            last = props
            self.call_from_thread(self._progress, props)
        if last.get("State") != "succeeded":
            name, message = last.get("Error") or ["", ""]
            raise CliError(f"org.ose.Error.{name or 'Failed'}",
                           f"{last.get('State', 'failed')}: {message}", EXIT_FAILED)
        result: dict[str, Any] = last.get("Result", {})
        return result

    def _call(self, member: str, signature: str = "", *body: Any) -> Any:
        return self.client.call(PATH, IFACE_RESET, member, signature, body)

    def _preview(self, sel: dict[str, Any]) -> dict[str, Any]:
        return self._follow(self._call("Preview", "a{sv}", sel))

    def _items(self, plan: dict[str, Any]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        want = int(plan.get("item_count", 0))
        while len(rows) < want:
            page = self._call("GetPlanItems", "stu", plan["id"], len(rows), PAGE)
            rows += page
            self.call_from_thread(self._status, f"loading items: {len(rows)} of {want}")
            if len(page) < PAGE:
                break
        return rows

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A blocking call off the UI loop; errors become the status line."""
        self.busy = True
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self.busy = False
            self.query_one(ProgressBar).display = False

    async def _load(self) -> None:
        self._status(f"previewing profile {self.base.get('profile', '')}…")
        try:
            self.plan = await self._in_thread(self._preview, self.base)
            rows = await self._in_thread(self._items, self.plan)
            self.model = await self._in_thread(
                lambda: SelectModel(item_from_dbus(r) for r in rows))
        except Exception as exc:  # nothing to show: leave, osectl says why
            self.error = exc
            self.exit()
            return
        tree = self.query_one(PlanTree)
        tree.root.data = self.model.root
        self._shown = {id(self.model.root): tree.root}
        self._add_lines(tree.root)
        tree.root.expand()
        self._refresh()
        self._status(f"plan {self.plan.get('id', '')}: space ticks/unticks, enter opens, "
                     "x executes")

    # --- the tree -----------------------------------------------------------------------

    def _label(self, node: Node) -> Text:
        assert self.model is not None
        text = Text(MARK[self.model.state(node)])
        if node is self.model.root:
            text.append(f"plan {self.plan.get('id', '')} ({self.base.get('profile', '')})",
                        style="bold")
            text.append(f"  {size(self.model.node_bytes(node))}", style="cyan")
            return text
        # A name that is not UTF-8 (surrogate escapes) shows as \xNN: never raw bytes
        # on the terminal, and an encoder never trips on it.
        label = os.fsencode(node.label).decode("utf-8", "backslashreplace")
        text.append(label, style="bold" if node.kind in ("class", "rule") else "")
        text.append(f"  {size(self.model.node_bytes(node))}", style="cyan")
        if node.kind in {"class", "rule"}:
            n = len(node.members)
            text.append(f"  {n} item{'s' if n != 1 else ''}", style="dim")
        elif node.item is not None:
            item = self.model.items[node.item]
            text.append(f"  {item.kind} {item.risk}", style=RISK_STYLE.get(item.risk, ""))
        return text

    def _add_lines(self, line: TreeNode[Node]) -> None:
        assert line.data is not None
        for child in line.data.sorted_children():
            sub = line.add(self._label(child), data=child, allow_expand=bool(child.children))
            self._shown[id(child)] = sub

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Node]) -> None:
        line = event.node
        if line.data is not None and not line.children and line.data.children:
            self._add_lines(line)  # lazily: big plans have big directories

    def _refresh(self) -> None:
        assert self.model is not None
        for line in self._walk(self.query_one(PlanTree).root):
            if line.data is not None:
                line.set_label(self._label(line.data))
        before, _ = self.model.totals("before")
        after, by_class = self.model.totals("after")
        text = Text("Plan ", style="bold")
        text.append(f"{self.plan.get('id', '')}\n")
        text.append(f"all:     {before.count} items, {size(before.bytes)}\n")
        text.append(f"ticked:  {after.count} items, {size(after.bytes)}\n", style="bold")
        for cls in CLASS_ORDER:
            if cls in by_class:
                t = by_class[cls]
                text.append(f"  {cls:7} {t.count:>7} {size(t.bytes):>12}\n")
        text.append(f"paths left out: {len(self.model.exclude_paths())}")
        self.query_one("#totals", Static).update(text)

    @staticmethod
    def _walk(line: TreeNode[Node]) -> Iterator[TreeNode[Node]]:
        stack = [line]
        while stack:
            n = stack.pop()
            yield n
            stack.extend(n.children)

    def tick_cursor(self) -> None:
        line = self.query_one(PlanTree).cursor_node
        if self.model is None or self.busy or line is None or line.data is None:
            return
        self.model.toggle(line.data)
        self._refresh()

    # --- execute ------------------------------------------------------------------------

    def action_execute(self) -> None:
        if (self.model is None or self.busy or self.result is not None
                or isinstance(self.screen, ConfirmScreen)):
            return
        if not self.model.totals("after")[0].count:
            self._status("nothing ticked: nothing to execute")
            return
        try:
            sel = self.model.selection(self.base)
        except SelectionError as exc:
            self._status(str(exc))
            return
        self.run_worker(self._repreview(sel), exclusive=True)

    async def _repreview(self, sel: dict[str, Any]) -> None:
        self._status("making the plan of the ticked items…")
        try:
            plan = await self._in_thread(self._preview, sel)
        except Exception as exc:
            self._status(f"preview failed: {exc}")
            return
        self.last_plan = plan
        self._status(f"new plan {plan.get('id', '')} (digest {plan.get('digest', '')})")
        self.push_screen(ConfirmScreen(summary(self.plan, plan)), self._confirmed)

    def _confirmed(self, yes: bool | None) -> None:
        if yes:
            self.run_worker(self._execute(self.last_plan), exclusive=True)
        else:
            self._status("not executed; tick on, or x again")

    async def _execute(self, plan: dict[str, Any]) -> None:
        self._status(f"executing plan {plan.get('id', '')}…")

        def run() -> dict[str, Any]:
            path = self._call("Execute", "ssa{sv}", plan["id"], plan["digest"], {})
            return self._follow(path)
        try:
            self.result = await self._in_thread(run)
        except Exception as exc:
            self.error = exc  # reported again when the UI ends
            self._status(f"execute failed: {exc}.  q quits")
            return
        r = self.result
        self._status(f"removed {r.get('removed', 0)} items ({size(int(r.get('removed_bytes', 0)))})"
                     f"; {r.get('skipped_count', 0)} skipped; execution {r.get('execution')}, "
                     f"undo: osectl reset rollback {r.get('execution')}.  q quits")


def run(client: ResetClient, base: dict[str, Any]) -> dict[str, Any] | None:
    """Run the UI; the Execute result, or None if nothing was executed. A first
    Preview that fails, or a failed Execute, is raised as a CliError once it ends."""
    app = ResetSelectApp(client, base)
    app.run()
    if app.error is not None:
        if isinstance(app.error, CliError):
            raise app.error
        raise CliError("org.ose.Client.Failed", str(app.error), EXIT_FAILED)
    return app.result
