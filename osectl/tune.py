"""osectl tune list|show|recommend|apply|verify|revert|hold|bench|benchmarks|compare."""

from __future__ import annotations

import signal
import sys
from typing import Any

import click

from osectl.context import Ctx, follow_job, pass_ctx
from osectl.errors import EXIT_FAILED
from oseprovd.bus.names import IFACE_TUNING, SERVICE_PATHS

PATH = SERVICE_PATHS[IFACE_TUNING]

PLAN_COLUMNS = [("knob", "Knob", None), ("current", "Now", None), ("target", "Profile", None),
                ("change", "Changes", None), ("reason", "Note", None)]
OUTCOME_COLUMNS = [("knob", "Knob", None), ("before", "Before", None),
                   ("after", "After", None), ("status", "Status", None),
                   ("detail", "Detail", None)]


def _call(ctx: Ctx, member: str, signature: str = "", *body: Any) -> Any:
    return ctx.client.call(PATH, IFACE_TUNING, member, signature, body)


@click.group()
def tune() -> None:
    """Hardware-aware tuning profiles: apply, verify, revert, prove."""


@tune.command("list")
@pass_ctx
def list_profiles(ctx: Ctx) -> None:
    """The profiles, with the active and the recommended one."""
    rows = _call(ctx, "ListProfiles")
    for r in rows:
        r["mark"] = ("active " if r.get("active") else "") + (
            "recommended" if r.get("recommended") else "")
    ctx.out.table(rows, "Tuning profiles", [
        ("name", "Profile", None), ("description", "Description", None),
        ("mark", "", None)], "No profiles.")


@tune.command()
@click.argument("profile")
@pass_ctx
def show(ctx: Ctx, profile: str) -> None:
    """What PROFILE would change on this machine, knob by knob."""
    info = _call(ctx, "GetProfile", "s", profile)
    if ctx.out.as_json:
        ctx.out.json(info)
        return
    ctx.out.record(info, f"Profile {profile}", [
        ("description", "Description", None), ("origin", "From", None),
        ("includes", "Includes", None)])
    ctx.out.table(info["plan"]["items"], "Plan on this machine", PLAN_COLUMNS, "Nothing to do.")


@tune.command()
@pass_ctx
def recommend(ctx: Ctx) -> None:
    """The profile that fits this machine, and why."""
    rec = _call(ctx, "Recommend")
    if ctx.out.as_json:
        ctx.out.json(rec)
        return
    ctx.out.message(f"Recommended: {rec['profile']} — {rec['summary']}")
    ctx.out.table(rec["reasons"], "Why", [("fact", "Fact", None), ("value", "Here", None),
                                          ("expected", "Profile wants", None),
                                          ("ok", "Matches", None)], "No conditions.")


@tune.command()
@click.argument("profile")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--skip-power", is_flag=True,
              help="Leave CPU power settings to another power manager.")
@pass_ctx
def apply(ctx: Ctx, profile: str, dry_run: bool, skip_power: bool) -> None:
    """Apply PROFILE (the active one is reverted first)."""
    path = _call(ctx, "Apply", "sa{sv}", profile,
                 {"dry_run": dry_run, "skip_power": skip_power})
    result = follow_job(ctx, path, f"apply {profile}")
    if ctx.out.as_json:
        ctx.out.json(result)
    elif dry_run:
        ctx.out.table(result["plan"]["items"], f"{profile}: would change", PLAN_COLUMNS,
                      "Nothing to change.")
    else:
        ctx.out.table(result.get("outcomes", []), f"{profile} applied", OUTCOME_COLUMNS,
                      "Nothing to change.")


@tune.command()
@pass_ctx
def verify(ctx: Ctx) -> None:
    """Check the active profile's values; exit 1 if any drifted."""
    result = _call(ctx, "Verify")
    if ctx.out.as_json:
        ctx.out.json(result)
    else:
        ctx.out.table(result["items"], f"Profile {result.get('profile') or '(none)'}",
                      [("knob", "Knob", None), ("target", "Profile", None),
                       ("current", "Now", None), ("status", "Status", None)],
                      "No profile is active.")
    if result["drifted"]:
        sys.exit(EXIT_FAILED)


@tune.command()
@pass_ctx
def revert(ctx: Ctx) -> None:
    """Restore every value the active profile changed."""
    result = follow_job(ctx, _call(ctx, "Revert"), "revert")
    if ctx.out.as_json:
        ctx.out.json(result)
    else:
        ctx.out.table(result.get("outcomes", []), "Restored",
                      [("knob", "Knob", None), ("original", "Value", None),
                       ("status", "Status", None), ("detail", "Detail", None)],
                      "Nothing to restore.")


@tune.command()
@click.argument("profile")
@click.option("--reason", default="held from osectl", show_default=True)
@click.option("--app-id", default="osectl", show_default=True)
@pass_ctx
def hold(ctx: Ctx, profile: str, reason: str, app_id: str) -> None:
    """Hold PROFILE while this command runs; Ctrl-C releases it."""
    cookie = _call(ctx, "Hold", "sss", profile, reason, app_id)
    ctx.out.message(f"holding {profile} (cookie {cookie}); press Ctrl-C to release",
                    {"cookie": cookie, "profile": profile})
    signal.sigwait({signal.SIGINT, signal.SIGTERM})


@tune.command()
@click.option("--suite", type=click.Choice(["quick", "standard"]), default="quick",
              show_default=True)
@click.option("--runs", type=click.IntRange(1, 50), default=5, show_default=True)
@pass_ctx
def bench(ctx: Ctx, suite: str, runs: int) -> None:
    """Measure this machine under the active profile (for `tune compare`)."""
    result = follow_job(ctx, _call(ctx, "Benchmark", "sa{sv}", suite, {"runs": runs}),
                        f"benchmark {suite}")
    ctx.out.message(f"benchmark {result.get('id')} stored (profile "
                    f"{result.get('profile') or 'none'})", result)


@tune.command()
@pass_ctx
def benchmarks(ctx: Ctx) -> None:
    """Stored benchmark results."""
    ctx.out.table(_call(ctx, "ListBenchmarks"), "Benchmarks", [
        ("id", "ID", None), ("suite", "Suite", None), ("profile", "Profile", None),
        ("started", "Started", "time")], "No benchmarks yet: run `osectl tune bench`.")


@tune.command()
@click.argument("before")
@click.argument("after")
@pass_ctx
def compare(ctx: Ctx, before: str, after: str) -> None:
    """Compare two benchmark results, with their noise."""
    result = _call(ctx, "CompareBenchmarks", "ss", before, after)
    if ctx.out.as_json:
        ctx.out.json(result)
        return
    ctx.out.table(result["metrics"], f"{result.get('before_profile') or 'none'} → "
                  f"{result.get('after_profile') or 'none'}", [
                      ("name", "Metric", None), ("unit", "Unit", None),
                      ("before", "Before", None), ("after", "After", None),
                      ("change", "Change (+ better)", "percent"), ("noise", "Noise", "percent"),
                      ("significant", "Beyond noise", None)],
                  "Nothing to compare.")
