"""osectl reset's own logic over a stand-in daemon (what it sends, what it prints):
a job number for rollback/resume/executions, the distribution baseline's display, an
empty analysis. The real daemon path is tests/integration/test_reset_bus.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from click.testing import CliRunner

from osectl.context import Ctx
from osectl.render import Output
from osectl.reset import reset

EXEC = "x0123456789abcdef"


class StandIn:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def call(self, path: str, iface: str, member: str, sig: str, body: Any) -> Any:
        self.calls.append((member, tuple(body)))
        return self.answers[member]

    def watch_job(self, job_id: int) -> Iterator[dict[str, Any]]:
        yield {"State": "succeeded", "Progress": 1.0, "Result": self.answers["result"]}


def run(client: StandIn, *args: str) -> Any:
    return CliRunner().invoke(reset, list(args), obj=Ctx(client, Output(False, False)),  # type: ignore[arg-type]
                              catch_exceptions=False)


def test_a_job_number_names_the_execution_it_started() -> None:
    rows = [{"id": "x1111111111111111", "job_id": 3}, {"id": EXEC, "job_id": 12}]
    client = StandIn({"ListExecutions": rows, "Rollback": "/org/ose/Provisioning1/Job/13",
                      "Resume": "/org/ose/Provisioning1/Job/14", "GetExecution": rows[1],
                      "result": {"restored": 1}})
    r = run(client, "rollback", "12", "--yes")
    assert r.exit_code == 0, r.output
    assert ("Rollback", (EXEC,)) in client.calls
    run(client, "resume", "12", "--yes")
    assert ("Resume", (EXEC,)) in client.calls
    run(client, "executions", "12")
    assert ("GetExecution", (EXEC,)) in client.calls
    # an execution id goes as it is, without a lookup
    client.calls.clear()
    run(client, "rollback", EXEC, "--yes")
    assert client.calls == [("Rollback", (EXEC,))]


def test_a_job_that_started_no_execution_is_not_found() -> None:
    from osectl.errors import CliError

    client = StandIn({"ListExecutions": [{"id": EXEC, "job_id": 12}]})
    try:
        run(client, "rollback", "7", "--yes")
    except CliError as e:
        assert e.exit_code == 3 and "job 7" in e.message
    else:
        raise AssertionError("no error")
    assert not any(m == "Rollback" for m, _ in client.calls)


def test_the_distribution_baseline_shows_no_capture_time() -> None:
    b = {"source": "distribution", "captured": 1795811449.0, "packages": [{}] * 3,
         "note": "no baseline was captured"}
    out = run(StandIn({"GetBaseline": b}), "baseline").output
    captured = next(line for line in out.splitlines() if line.startswith("Captured"))
    assert captured.split()[1:] == ["-"]
    b["source"] = "captured"
    out = run(StandIn({"GetBaseline": b}), "baseline").output
    captured = next(line for line in out.splitlines() if line.startswith("Captured"))
    assert captured.split()[1][:2] == "20"


def test_an_empty_analysis_prints_no_empty_tables() -> None:
    empty = {"profile": "light", "baseline_source": "captured",
             "totals": {"count": 0, "bytes": 0},
             "by_class": {"cache": {"count": 0, "bytes": 0}},
             "by_risk": {"safe": {"count": 0, "bytes": 0}}}
    out = run(StandIn({"Analyze": "/org/ose/Provisioning1/Job/5", "result": empty}),
              "analyze").output
    assert "0 items" in out and "By class" not in out and "By risk" not in out


def test_kept_entries_show_their_package_and_class() -> None:
    a = {"profile": "light", "baseline_source": "captured", "totals": {"count": 1, "bytes": 9},
         "by_class": {"cache": {"count": 1, "bytes": 9}}, "by_risk": {},
         "kept_by_package": [{"package": "apt", "priority": "important", "cls": "system",
                              "count": 2, "reason": "r"}]}
    out = run(StandIn({"Analyze": "/org/ose/Provisioning1/Job/5", "result": a}),
              "analyze").output
    assert "apt (system, important): 2" in " ".join(out.split())


def test_execute_says_what_changed_besides_the_items() -> None:
    plan = {"id": "0123456789abcdef", "digest": "a" * 64, "analysis": {
        "totals": {"count": 1, "bytes": 1},
        "conffiles_restored": [["etc/adduser.conf", "adduser", "m", "var/cache/x.deb"],
                               ["etc/other.conf", "other", "m", ""]]}}
    result = {"removed": 1, "execution": EXEC, "packages_removed": ["ose-extra"],
              "packages_not_installed": ["gone: no .deb"],
              "conffiles_restored": ["etc/adduser.conf"]}
    out = run(StandIn({"GetPlan": plan, "Execute": "/org/ose/Provisioning1/Job/9",
                       "result": result}), "execute", "0123456789abcdef", "--yes").output
    flat = " ".join(out.split())
    assert "/etc/adduser.conf (adduser)" in flat
    assert "/etc/other.conf (other; no .deb at hand: skipped)" in flat
    assert "packages removed: ose-extra" in flat
    assert "packages NOT installed: gone: no .deb" in flat
    assert "conffiles restored: etc/adduser.conf" in flat
