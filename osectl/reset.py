"""osectl reset profiles|baseline|analyze|preview|select|items|execute|rollback|resume|
 executions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from osectl.context import Ctx, confirm, follow_job, pass_ctx
from osectl.errors import EXIT_FAILED, EXIT_NOT_FOUND, CliError
from osectl.render import FORMATTERS
from oseprovd.bus.names import IFACE_RESET, SERVICE_PATHS

PATH = SERVICE_PATHS[IFACE_RESET]
PAGE = 5000  # the daemon's largest page: fewest calls under its rate limit
RISK_STYLE = {"safe": "green", "caution": "yellow", "destructive": "bold red"}
CLASS_ORDER = ("system", "app", "user", "cache", "log", "temp")
STATE_STYLE = {"done": "green", "rolled_back": "cyan", "interrupted": "bold yellow",
               "failed": "bold red", "running": "yellow", "rolling_back": "yellow",
               "rollback_interrupted": "bold yellow"}
ITEM_COLUMNS = [("path", "Path", None), ("kind", "Kind", None), ("cls", "Class", None),
                ("risk", "Risk", None), ("bytes", "Size", "bytes"), ("owner", "Owner", None),
                ("rule", "Rule", None)]
EXECUTION_COLUMNS = [("id", "Execution", None), ("state", "State", None),
                     ("started", "Started", "time"),
                     ("finished", "Finished", "time"), ("snapshot", "Rollback point", None),
                     ("job_id", "Job", None)]


def _call(ctx: Ctx, member: str, signature: str = "", *body: Any) -> Any:
    return ctx.client.call(PATH, IFACE_RESET, member, signature, body)


def _size(n: Any) -> str:
    return FORMATTERS["bytes"](n or 0)


def selection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The selection flags shared by analyze and preview (see `selection`)."""
    opts = [
        click.option("--profile", "-p", default="light", show_default=True,
                     help="light, medium, deep, nuclear or one of /etc/ose/reset-profiles.d."),
        click.option("--include", "include_paths", multiple=True, metavar="PATH",
                     help="Only items under PATH (repeatable)."),
        click.option("--exclude", "exclude_paths", multiple=True, metavar="PATH",
                     help="Leave items under PATH (repeatable)."),
        click.option("--include-glob", "include_globs", multiple=True, metavar="GLOB"),
        click.option("--exclude-glob", "exclude_globs", multiple=True, metavar="GLOB"),
        click.option("--class", "classes", multiple=True,
                     type=click.Choice(CLASS_ORDER), help="Only items of this class."),
        click.option("--exclude-class", "exclude_classes", multiple=True,
                     type=click.Choice(CLASS_ORDER)),
        click.option("--package", "packages", multiple=True, metavar="GLOB",
                     help="Only these package changes."),
        click.option("--exclude-package", "exclude_packages", multiple=True, metavar="GLOB",
                     help="Keep these packages ('*': no package changes)."),
        click.option("--user", "users", multiple=True, metavar="NAME",
                     help="Only these users' files and accounts."),
        click.option("--exclude-user", "exclude_users", multiple=True, metavar="NAME"),
        click.option("--max-risk", type=click.Choice(tuple(RISK_STYLE)),
                     default="destructive", show_default=True),
        click.option("--add-path", "add_paths", multiple=True, metavar="PATH",
                     help="Also empty this tree (destructive)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def selection(kw: dict[str, Any]) -> dict[str, Any]:
    """The a{sv} of a selection: only what was given (the daemon knows the defaults)."""
    out: dict[str, Any] = {"profile": kw.pop("profile")}
    if kw.get("max_risk") and kw["max_risk"] != "destructive":
        out["max_risk"] = kw["max_risk"]
    kw.pop("max_risk", None)
    out.update({k: list(v) for k, v in kw.items() if v})
    return out


def _totals_table(ctx: Ctx, title: str, rows: dict[str, Any], order: tuple[str, ...],
                  styles: dict[str, str] | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for label in ("", "Items", "Size"):
        table.add_column(label, justify="left" if not label else "right")
    for key in [k for k in order if k in rows] + sorted(set(rows) - set(order)):
        t = rows[key] or {}
        if not t.get("count"):
            continue
        style = (styles or {}).get(key, "")
        table.add_row(Text(key, style=style), str(t.get("count", 0)), _size(t.get("bytes")))
    ctx.out.console.print(table)


def _show_analysis(ctx: Ctx, a: dict[str, Any]) -> None:
    from rich.text import Text

    tot = a.get("totals") or {}
    line = Text("Profile ")
    line.append(str(a.get("profile", "")), style="bold")
    line.append(f" (baseline: {a.get('baseline_source', '')}): {tot.get('count', 0)} items, "
                f"{_size(tot.get('bytes'))}")
    ctx.out.console.print(line)
    if tot.get("count"):  # two empty tables say less than this line
        _totals_table(ctx, "By class", a.get("by_class") or {}, CLASS_ORDER)
        _totals_table(ctx, "By risk", a.get("by_risk") or {}, tuple(RISK_STYLE), RISK_STYLE)
    changes = a.get("package_changes") or []
    if changes:
        ctx.out.table(changes, "Package changes", [
            ("action", "Action", None), ("name", "Package", None),
            ("version", "Version", None), ("reason", "Why", None)], "")
    conf = a.get("conffiles_restored") or []
    if conf:
        ctx.out.message("Conffiles back to the package's version: " + ", ".join(
            f"/{c[0]} ({c[1]}{'' if c[3] else '; no .deb at hand: skipped'})"
            for c in conf))
    kept = a.get("kept_by_package") or []
    if kept:
        ctx.out.message("Kept (dpkg lists them; remove the package instead): " + ", ".join(
            f"{k.get('package')} ({k.get('cls')}, {k.get('priority') or 'no priority'}): "
            f"{k.get('count', 0)}" for k in kept))
    for key, label in (("users_removed", "Accounts removed"),
                       ("skel_trees", "Homes reset to /etc/skel"),
                       ("skipped_mounts", "Mount points not entered")):
        if a.get(key):
            ctx.out.message(f"{label}: {', '.join(a[key])}")
    for note in a.get("notes") or []:
        ctx.out.message(f"note: {note}")


def _show_plan(ctx: Ctx, plan: dict[str, Any]) -> None:
    from rich.text import Text

    risk = str(plan.get("highest_risk", ""))
    line = Text("Plan ")
    line.append(str(plan.get("id", "")), style="bold")
    line.append(f": {plan.get('item_count', 0)} items, highest risk ")
    line.append(risk, style=RISK_STYLE.get(risk, ""))
    line.append(f"; needs {plan.get('action', '')}")
    ctx.out.console.print(line)
    ctx.out.message(f"digest {plan.get('digest', '')}")
    _show_analysis(ctx, plan.get("analysis") or {})
    disk = plan.get("disk") or []
    if disk:
        rows = [{**d, "freed": max(0, int(d.get("used_before", 0)) - int(d.get("used_after", 0)))}
                for d in disk]
        ctx.out.table(rows, "Disk", [
            ("filesystem", "Filesystem", None), ("used_before", "Used now", "bytes"),
            ("used_after", "Used after", "bytes"), ("freed", "Freed", "bytes")], "")
    ctx.out.message(f"packages: {plan.get('packages_before', 0)} now, "
                    f"{plan.get('packages_after', 0)} after")


@click.group()
def reset() -> None:
    """Factory reset: analyze, preview a plan, execute it, roll it back."""


@reset.command()
@pass_ctx
def profiles(ctx: Ctx) -> None:
    """The reset profiles (shipped and /etc/ose/reset-profiles.d)."""
    rows = _call(ctx, "ListProfiles")
    if ctx.out.as_json:
        ctx.out.json(rows)
        return
    for r in rows:
        r["rule_ids"] = [rule.get("id", "") for rule in r.get("rules") or []]
    ctx.out.table(rows, "Reset profiles", [("name", "Profile", None),
                                           ("description", "Description", None),
                                           ("rule_ids", "Rules", None)], "No profiles.")


@reset.command()
@click.option("--capture", is_flag=True, help="Record now as factory state first.")
@pass_ctx
def baseline(ctx: Ctx, capture: bool) -> None:
    """What "factory" means here: the captured baseline, else the distribution's."""
    if capture:
        counts = _call(ctx, "CaptureBaseline")
        ctx.out.message(f"baseline captured: {counts.get('packages', 0)} packages, "
                        f"{counts.get('conffiles', 0)} conffiles, "
                        f"{counts.get('users', 0)} users", counts)
        return
    b = _call(ctx, "GetBaseline")
    if ctx.out.as_json:
        ctx.out.json(b)
        return
    # the distribution's definition is computed now: it has no capture time
    summary = {"source": b.get("source"),
               "captured": b.get("captured") if b.get("source") == "captured" else 0,
               **{k: len(b.get(k) or []) for k in
                  ("packages", "conffiles", "users", "groups", "services")},
               "note": b.get("note") or "-"}
    ctx.out.record(summary, "Baseline", [
        ("source", "Source", None), ("captured", "Captured", "time"),
        ("packages", "Packages", None), ("conffiles", "Conffiles", None),
        ("users", "Users", None), ("groups", "Groups", None),
        ("services", "Enabled services", None), ("note", "Note", None)])


@reset.command()
@selection_options
@pass_ctx
def analyze(ctx: Ctx, /, **kw: Any) -> None:
    """What a profile (narrowed by the options) would remove: totals only."""
    sel = selection(kw)
    result = follow_job(ctx, _call(ctx, "Analyze", "a{sv}", sel), f"analyze {sel['profile']}")
    if ctx.out.as_json:
        ctx.out.json(result)
        return
    _show_analysis(ctx, result)


@reset.command()
@selection_options
@pass_ctx
def preview(ctx: Ctx, /, **kw: Any) -> None:
    """Make a plan: its id and digest, totals, disk and packages before and after."""
    sel = selection(kw)
    plan = follow_job(ctx, _call(ctx, "Preview", "a{sv}", sel), f"preview {sel['profile']}")
    if ctx.out.as_json:
        ctx.out.json(plan)
        return
    _show_plan(ctx, plan)
    ctx.out.message(f"items: osectl reset items {plan.get('id')}; "
                    f"execute: osectl reset execute {plan.get('id')}")


@reset.command()
@selection_options
@pass_ctx
def select(ctx: Ctx, /, **kw: Any) -> None:
    """Pick items in a terminal UI: tick, see the totals, execute (Textual)."""
    sel = selection(kw)
    try:
        from osectl.reset_select import run  # Textual: only this command pays for it
    except ImportError as exc:
        raise CliError("org.ose.Client.Missing", f"reset select needs Textual ({exc})",
                       EXIT_FAILED) from None
    ctx.client.keep_terminal()
    result = run(ctx.client, sel)
    if result is None:
        ctx.out.message("nothing executed")
        return
    ctx.out.message(f"removed {result.get('removed', 0)} items "
                    f"({_size(result.get('removed_bytes'))}); execution "
                    f"{result.get('execution')} (undo: osectl reset rollback "
                    f"{result.get('execution')})", result)


@reset.command()
@click.argument("plan_id")
@click.option("--offset", default=0, type=click.IntRange(0), show_default=True)
@click.option("--limit", default=100, type=click.IntRange(1), show_default=True,
              help="How many items (fetched in pages of 5000).")
@pass_ctx
def items(ctx: Ctx, plan_id: str, offset: int, limit: int) -> None:
    """The items of PLAN_ID, in path order."""
    rows: list[dict[str, Any]] = []
    while len(rows) < limit:
        want = min(PAGE, limit - len(rows))
        page = _call(ctx, "GetPlanItems", "stu", plan_id, offset + len(rows), want)
        for item in page:
            item.pop("path_bytes", None)  # `path` shows the same name as text
        rows += page
        if len(page) < want:
            break
    _table(ctx, rows, f"Plan {plan_id}", ITEM_COLUMNS, "No items.",
           {"risk": RISK_STYLE})


@reset.command()
@click.argument("plan_id")
@click.option("--digest", default="", help="The digest shown by preview (default: the "
              "plan's current one, after you confirm its totals).")
@click.option("--dry-run", is_flag=True, help="Check everything, change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def execute(ctx: Ctx, plan_id: str, digest: str, dry_run: bool, yes: bool) -> None:
    """Carry out PLAN_ID behind a rollback point (asks first, showing the totals)."""
    plan = _call(ctx, "GetPlan", "s", plan_id)
    if not ctx.out.as_json:
        _show_plan(ctx, plan)
    if not dry_run:
        tot = (plan.get("analysis") or {}).get("totals") or {}
        confirm(yes, f"Remove {tot.get('count', 0)} items ({_size(tot.get('bytes'))}) "
                      f"with plan {plan_id}?")
    path = _call(ctx, "Execute", "ssa{sv}", plan_id, digest or plan.get("digest", ""),
                 {"dry_run": dry_run})
    result = follow_job(ctx, path, f"execute {plan_id}")
    verb = "would remove" if dry_run else "removed"
    text = (f"{verb} {result.get('removed', 0)} items ({_size(result.get('removed_bytes'))}); "
            f"{result.get('skipped_count', 0)} skipped, {result.get('already_gone', 0)} "
            "already gone")
    if not dry_run:
        text += (f"; execution {result.get('execution')}, rollback point "
                 f"{result.get('rollback_point') or '-'} "
                 f"(undo: osectl reset rollback {result.get('execution')})")
    ctx.out.message(text, result)
    _show_changes(ctx, result)


def _show_changes(ctx: Ctx, result: dict[str, Any]) -> None:
    """What an execution did besides removing items (human output only: --json has
    the whole result)."""
    if ctx.out.as_json:
        return
    for key, label in (("packages_removed", "packages removed"),
                       ("packages_installed", "packages installed"),
                       ("packages_not_installed", "packages NOT installed"),
                       ("conffiles_restored", "conffiles restored")):
        if result.get(key):
            ctx.out.message(f"{label}: {', '.join(str(v) for v in result[key])}")


def _execution_id(ctx: Ctx, arg: str) -> str:
    """An execution id, or the number of the job that started it (`osectl jobs list`
    shows jobs; the issue's `osectl reset rollback JOB`)."""
    if not arg.isdigit():
        return arg
    found = [str(r.get("id")) for r in _call(ctx, "ListExecutions")
             if str(r.get("job_id", "")) == str(int(arg))]
    if not found:
        raise CliError("org.ose.Error.NotFound", f"job {arg} started no reset execution "
                       "(see osectl reset executions)", EXIT_NOT_FOUND)
    return found[0]


@reset.command()
@click.argument("execution_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def rollback(ctx: Ctx, execution_id: str, yes: bool) -> None:
    """Put back everything EXECUTION_ID (or the execution job JOB) removed."""
    execution_id = _execution_id(ctx, execution_id)
    confirm(yes, f"Roll back reset {execution_id}?")
    result = follow_job(ctx, _call(ctx, "Rollback", "s", execution_id),
                        f"rollback {execution_id}")
    ctx.out.message(f"rolled back {execution_id}: {result.get('restored', 0)} items "
                    f"restored from {result.get('snapshot') or '-'}", result)


@reset.command("rollback-baseline")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def rollback_baseline(ctx: Ctx, yes: bool) -> None:
    """btrfs: roll the whole root back to the snapshot taken with the baseline."""
    confirm(yes, "Roll the whole root back to the baseline snapshot (everything "
                  "since is kept only in the previous snapshot)?")
    result = follow_job(ctx, _call(ctx, "RollbackToBaseline"), "rollback to baseline")
    ctx.out.message(f"rolled back to {result.get('snapshot') or '-'}; previous state in "
                    f"{result.get('previous') or '-'}"
                    + ("; reboot required" if result.get("reboot_required") else ""),
                    result)


@reset.command()
@click.argument("execution_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def resume(ctx: Ctx, execution_id: str, yes: bool) -> None:
    """Finish an interrupted EXECUTION_ID (or the execution job JOB)."""
    execution_id = _execution_id(ctx, execution_id)
    confirm(yes, f"Finish reset {execution_id}?")
    result = follow_job(ctx, _call(ctx, "Resume", "s", execution_id),
                        f"resume {execution_id}")
    ctx.out.message(f"finished {execution_id}: removed {result.get('removed', 0)} items, "
                    f"{result.get('skipped_count', 0)} skipped", result)
    _show_changes(ctx, result)


def _table(ctx: Ctx, rows: list[dict[str, Any]], title: str,
           columns: list[tuple[str, str, str | None]], empty: str,
           styles: dict[str, dict[str, str]] | None = None) -> None:
    """Like Output.table, but long ids and paths fold instead of being cut (they are
    what people copy into the next command), and some columns are coloured by value
    (styles: column -> value -> rich style; the cell text itself is never markup)."""
    if ctx.out.as_json:
        ctx.out.json(rows)
        return
    if not rows:
        ctx.out.message(empty)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for key, label, _ in columns:
        table.add_column(label, overflow="fold", no_wrap=False,
                         min_width=17 if key == "id" else None)
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            text = "-" if value in (None, "") else (
                FORMATTERS[fmt](value) if fmt else str(value))
            cells.append(Text(text, style=(styles or {}).get(key, {}).get(text, "")))
        table.add_row(*cells)
    ctx.out.console.print(table)


def show_executions(ctx: Ctx, rows: list[dict[str, Any]]) -> None:
    _table(ctx, rows, "Reset executions", EXECUTION_COLUMNS, "No reset executions.",
           {"state": STATE_STYLE})


@reset.command()
@click.argument("execution_id", required=False)
@pass_ctx
def executions(ctx: Ctx, execution_id: str | None) -> None:
    """The reset executions, or one of them (with what it skipped, if you may see it)."""
    if execution_id is None:
        show_executions(ctx, _call(ctx, "ListExecutions"))
        return
    rec = _call(ctx, "GetExecution", "s", _execution_id(ctx, execution_id))
    if ctx.out.as_json:
        ctx.out.json(rec)
        return
    show_executions(ctx, [rec])
    ctx.out.message(f"plan {rec.get('plan', '')}")
    result = rec.get("result") or {}
    if result:
        ctx.out.message(f"removed {result.get('removed', 0)} items "
                        f"({_size(result.get('removed_bytes'))}), "
                        f"{result.get('skipped_count', 0)} skipped")
    ctx.out.table(list(result.get("skipped") or []), "Skipped",
                  [("path", "Path", None), ("reason", "Why", None)], "")
