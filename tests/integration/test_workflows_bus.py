"""org.ose.Workflows1 on the real daemon, polkitd and bus: a workflow of snapshot +
light reset + tuning over a lived-in sandbox root (--root) and a sandbox /proc/sys
(--proc-root). oseuser may read but not run or roll back; oseadmin runs it and rolls it
back. The truth is what the test planted and a manifest the test takes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Variant

from oseprovd.bus.convert import unwrap
from tests.harness.busclient import BusError, call_daemon, single
from tests.harness.daemon import DaemonProcess
from tests.harness.users import call_as
from tests.integration.test_reset_bus import last_json, manifest, osectl, wait_job
from tests.integration.test_tuning_bus import kernel_tree
from tests.unit.reset.livedin import LivedIn, build

pytestmark = pytest.mark.root

NAME = "org.ose.Provisioning1"
WORKFLOWS = ("/org/ose/Provisioning1/Workflows", "org.ose.Workflows1")
DENIED = "org.freedesktop.DBus.Error.AccessDenied"

TUNING_PROFILE = """
[profile]
description = "workflow test"

[sysctl]
"vm.swappiness" = 10
"""

WORKFLOW = """
description = "snapshot, clean caches, tune"

[[step]]
kind = "snapshot"

[[step]]
kind = "reset"
profile = "light"

[[step]]
kind = "tuning"
profile = "wftest"
"""


@pytest.fixture
def rig(ose_daemon) -> Iterator[tuple[DaemonProcess, LivedIn, Path]]:  # type: ignore[no-untyped-def]
    d = ose_daemon.start(start=False, extra_args=["--snapshot-timer", "0"])
    tree = build(d.root)
    for rel, text in (("etc/ose/workflows.d/tidy.toml", WORKFLOW),
                      ("etc/ose/workflows.d/broken.toml", '[[step]]\nkind = "tuning"\n'),
                      ("etc/ose/tuning-profiles.d/wftest.toml", TUNING_PROFILE)):
        p = d.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    proc, sys_ = kernel_tree(d.state_dir.parent)
    d.extra_args += ["--proc-root", str(proc), "--sys-root", str(sys_)]
    d.start()
    yield d, tree, proc


def wcall(address: str, member: str, sig: str = "", *body: Any) -> Any:
    return single(call_daemon(address, *WORKFLOWS, member, sig, *body))


def client(address: str) -> Any:
    def as_client(member: str, sig: str, *body: Any) -> Any:
        try:
            return ("ok", unwrap(wcall(address, member, sig, *body)))
        except BusError as e:
            return (e.name, None)
    return as_client


def knob(proc: Path, rel: str) -> str:
    return (proc / "sys" / rel).read_text().strip()


def test_run_and_rollback_as_admin_denied_to_user(rig, test_users) -> None:  # type: ignore[no-untyped-def]
    d, tree, proc = rig
    addr, root = d.bus_address, d.root
    as_client = client(addr)
    admin, user = test_users.admin, test_users.user
    before = manifest(root)
    knobs = knob(proc, "vm/swappiness")

    # reads are public; a broken file is listed with the file and the key
    outcome, listed = call_as(user, as_client, "ListWorkflows", "")
    assert outcome == "ok"
    by_name = {w["name"]: w for w in listed}
    assert by_name["tidy"]["steps"] == ["snapshot", "reset", "tuning"]
    assert "broken.toml" in by_name["broken"]["error"]
    assert "step[1].profile" in by_name["broken"]["error"]
    # running and rolling back are not
    assert call_as(user, as_client, "RunWorkflow", "sa{sv}", "tidy", {})[0] == DENIED
    assert manifest(root) == before and knob(proc, "vm/swappiness") == knobs

    # a dry run through osectl (root) checks every step and changes nothing
    dry = last_json(osectl(addr, "--json", "workflow", "run", "tidy", "--dry-run"))
    assert dry["dry_run"] and [s["state"] for s in dry["steps"]] == ["done"] * 3
    assert manifest(root) == before and knob(proc, "vm/swappiness") == knobs

    outcome, path = call_as(admin, as_client, "RunWorkflow", "sa{sv}", "tidy",
                            {"dry_run": Variant("b", False)})
    assert outcome == "ok", outcome
    state, result, error = wait_job(addr, path)
    assert state == "succeeded", error
    assert [s["state"] for s in result["steps"]] == ["done", "done", "done"]
    for rel in tree.light_removes:
        assert not os.path.lexists(root / rel), rel
    for rel in tree.keeps:
        assert os.path.lexists(root / rel), rel
    assert knob(proc, "vm/swappiness") == "10"

    run_id = result["id"]
    assert call_as(user, as_client, "GetRun", "s", run_id)[1]["state"] == "done"
    assert call_as(user, as_client, "RollbackWorkflow", "s", run_id)[0] == DENIED
    outcome, path = call_as(admin, as_client, "RollbackWorkflow", "s", run_id)
    assert outcome == "ok", outcome
    state, result, error = wait_job(addr, path)
    assert state == "succeeded", error
    assert manifest(root) == before
    assert knob(proc, "vm/swappiness") == knobs

    # osectl over the same daemon (root: polkit's root fallback)
    runs = last_json(osectl(addr, "--json", "workflow", "runs"))
    assert [r["state"] for r in runs] == ["rolled_back"]
    shown = last_json(osectl(addr, "--json", "workflow", "show", "tidy"))
    assert [s["kind"] for s in shown["steps"]] == ["snapshot", "reset", "tuning"]
    for args in (("workflow", "list"), ("workflow", "show", "tidy"), ("workflow", "runs"),
                 ("workflow", "runs", run_id)):
        human = osectl(addr, "--no-color", *args)
        assert human.returncode == 0, human.stderr
        assert "tidy" in human.stdout
    bad = osectl(addr, "workflow", "run", "broken", "--yes")
    assert bad.returncode != 0 and "step[1].profile" in bad.stderr
