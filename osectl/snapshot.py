"""osectl snapshot configs|list|show|create|delete|diff|undo|rollback|cleanup|mount|umount."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

import click

from osectl.context import Ctx, confirm, follow_job, pass_ctx
from osectl.errors import CliError
from oseprovd.bus.names import IFACE_SNAPSHOTS, SERVICE_PATHS

PATH = SERVICE_PATHS[IFACE_SNAPSHOTS]
PAGE = 2000

SNAPSHOT_COLUMNS = [("id", "ID", None), ("kind", "Kind", None), ("created", "Created", "time"),
                    ("description", "Description", None), ("important", "Important", None),
                    ("cleanup", "Cleanup", None)]
SNAPSHOT_FIELDS = [("id", "ID", None), ("config", "Config", None), ("backend", "Backend", None),
                   ("kind", "Kind", None), ("pre_id", "Pre snapshot", None),
                   ("created", "Created", "time"), ("description", "Description", None),
                   ("userdata", "User data", None), ("job_id", "Job", None),
                   ("important", "Important", None), ("cleanup", "Cleanup", None),
                   ("uuid", "UUID", None)]


def _call(ctx: Ctx, member: str, signature: str = "", *body: Any) -> Any:
    return ctx.client.call(PATH, IFACE_SNAPSHOTS, member, signature, body)



def _shown(path: bytes) -> str:
    """A path for people and JSON: bytes that are not UTF-8 appear as \\xNN."""
    return path.decode("utf-8", "backslashreplace")


@click.group()
def snapshot() -> None:
    """Snapshots: create, compare, undo a change, roll back, clean up."""


@snapshot.command()
@pass_ctx
def configs(ctx: Ctx) -> None:
    """The snapshot configs (what is snapshotted, and how)."""
    ctx.out.table(_call(ctx, "ListConfigs"), "Snapshot configs", [
        ("name", "Config", None), ("backend", "Backend", None), ("path", "Path", None),
        ("snapshot_dir", "Snapshots in", None), ("root_subvolume", "Root", None)],
        "No snapshot configs.")


@snapshot.command("list")
@click.argument("config", default="root")
@pass_ctx
def list_snapshots(ctx: Ctx, config: str) -> None:
    """The snapshots of CONFIG (default: root), oldest first."""
    ctx.out.table(_call(ctx, "ListSnapshots", "s", config), f"Snapshots of {config}",
                  SNAPSHOT_COLUMNS, "No snapshots.")


@snapshot.command()
@click.argument("snapshot_id")
@pass_ctx
def show(ctx: Ctx, snapshot_id: str) -> None:
    """One snapshot."""
    ctx.out.record(_call(ctx, "GetSnapshot", "s", snapshot_id), f"Snapshot {snapshot_id}",
                   SNAPSHOT_FIELDS)


@snapshot.command()
@click.argument("config", default="root")
@click.option("--description", "-d", default="", help="What the snapshot is for.")
@click.option("--userdata", "-u", multiple=True, metavar="KEY=VALUE",
              help="Extra data to keep with it (repeatable).")
@pass_ctx
def create(ctx: Ctx, config: str, description: str, userdata: tuple[str, ...]) -> None:
    """Take a snapshot of CONFIG (default: root) now."""
    data = {}
    for item in userdata:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--userdata")
        data[key] = value
    snap = _call(ctx, "CreateSnapshot", "ssa{ss}", config, description, data)
    ctx.out.message(f"created snapshot {snap}", {"id": snap})


@snapshot.command()
@click.argument("ids", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def delete(ctx: Ctx, ids: tuple[str, ...], yes: bool) -> None:
    """Delete the snapshots IDS (all or none)."""
    confirm(yes, f"Delete {', '.join(ids)} for good?")
    deleted = _call(ctx, "DeleteSnapshots", "as", list(ids))
    ctx.out.message(f"deleted {', '.join(deleted)}", {"deleted": list(deleted)})


@snapshot.command()
@click.argument("snapshot_id")
@click.argument("other", default="")
@pass_ctx
def diff(ctx: Ctx, snapshot_id: str, other: str) -> None:
    """What changed from SNAPSHOT_ID to OTHER (a later snapshot; default: now)."""
    result = follow_job(ctx, _call(ctx, "Diff", "ss", snapshot_id, other),
                      f"diff {snapshot_id}")
    rows: list[dict[str, Any]] = []
    while True:
        page = _call(ctx, "GetDiffPage", "ttu", result["diff"], len(rows), PAGE)
        rows += [{"path": _shown(bytes(path)), "change": change} for path, change in page]
        if len(page) < PAGE:
            break
    ctx.out.table(rows, f"{snapshot_id} → {other or 'now'}",
                  [("change", "Change", None), ("path", "Path", None)], "No changes.")


@snapshot.command()
@click.argument("snapshot_id")
@click.argument("paths", nargs=-1, required=True)
@pass_ctx
def undo(ctx: Ctx, snapshot_id: str, paths: tuple[str, ...]) -> None:
    """Make PATHS (relative to the config's tree; "." = all) what they were in
    SNAPSHOT_ID."""
    result = follow_job(ctx, _call(ctx, "UndoChange", "saay", snapshot_id,
                                 [os.fsencode(p) for p in paths]), f"undo from {snapshot_id}")
    ctx.out.message(f"restored {result.get('changed', 0)} entries from {snapshot_id}", result)


@snapshot.command()
@click.argument("snapshot_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def rollback(ctx: Ctx, snapshot_id: str, yes: bool) -> None:
    """Make the config's tree SNAPSHOT_ID (what is live now is kept as a snapshot)."""
    confirm(yes, f"Roll back to {snapshot_id}?")
    result = follow_job(ctx, _call(ctx, "Rollback", "s", snapshot_id),
                      f"rollback to {snapshot_id}")
    text = f"rolled back to {snapshot_id}"
    if result.get("previous"):
        text += f"; what was live is snapshot {result['previous']}"
    if result.get("reboot_required"):
        text += "; reboot to finish"
    ctx.out.message(text, result)


@snapshot.command()
@click.argument("config", default="root")
@pass_ctx
def cleanup(ctx: Ctx, config: str) -> None:
    """Apply CONFIG's retention limits now."""
    result = follow_job(ctx, _call(ctx, "Cleanup", "s", config), f"cleanup {config}")
    deleted = list(result.get("deleted") or [])
    ctx.out.message(f"deleted {', '.join(deleted) or 'nothing'}; {result.get('kept', 0)} kept",
                    result)


def _reachable(ctx: Ctx, path: str) -> str:
    """The daemon mounts in its own mount namespace when systemd gives it one
    (PrivateMounts=yes): from ours, root reaches it through /proc/<pid>/root."""
    pid = ctx.client.daemon_pid()
    if pid is None:
        return path
    try:
        theirs = os.readlink(f"/proc/{pid}/ns/mnt")
        ours = os.readlink("/proc/self/ns/mnt")
    except OSError:  # not root: the mount dir is root's alone anyway
        return path
    return path if theirs == ours else f"/proc/{pid}/root{path}"


@snapshot.command(context_settings={"ignore_unknown_options": True})
@click.argument("snapshot_id")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def mount(ctx: Ctx, snapshot_id: str, command: tuple[str, ...]) -> None:
    """Mount SNAPSHOT_ID read-only (nosuid, nodev, noexec) for browsing, root only.

    The mount lasts as long as this command: with COMMAND, it runs COMMAND in the
    snapshot's directory (its path also in $OSE_SNAPSHOT_MOUNT) and unmounts when
    COMMAND ends; without, it prints the path and holds the mount until interrupted."""
    path = _reachable(ctx, _call(ctx, "MountSnapshot", "s", snapshot_id))
    rc = 0
    try:
        if command:
            import subprocess  # only here: every osectl command imports this module

            env = {**os.environ, "OSE_SNAPSHOT_MOUNT": path}
            rc = subprocess.run(list(command), cwd=path, env=env, check=False).returncode
        else:
            ctx.out.message(f"{snapshot_id} is mounted at {path}; Ctrl-C unmounts it",
                            {"id": snapshot_id, "path": path})
            sys.stdout.flush()
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    signal.pause()
    finally:
        # If it is busy (someone else inside), leaving the bus detaches it lazily.
        with contextlib.suppress(CliError):
            _call(ctx, "UnmountSnapshot", "s", snapshot_id)
    if rc:
        raise SystemExit(rc)


@snapshot.command()
@click.argument("snapshot_id")
@pass_ctx
def umount(ctx: Ctx, snapshot_id: str) -> None:
    """Take the browse mount of SNAPSHOT_ID away (one a client left behind)."""
    _call(ctx, "UnmountSnapshot", "s", snapshot_id)
    ctx.out.message(f"unmounted {snapshot_id}", {"id": snapshot_id})
