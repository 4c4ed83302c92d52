"""FileJournal: what is on disk is what entries() says (truth: the file's bytes)."""

from __future__ import annotations

import json
from pathlib import Path

from oseprovd.tuning.journal import FileJournal


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_bytes().split(b"\n") if x]


def test_records_are_whole_lines_on_disk_and_read_back(tmp_path: Path):
    j = FileJournal(tmp_path / "j")
    j.record("apply-begin", {"txn": "a", "originals": [["k", {"value": "1"}]]})
    j.record("apply-commit", {"txn": "a"})
    assert [x["step"] for x in lines(j.path)] == ["apply-begin", "apply-commit"]
    assert FileJournal(j.path).entries() == j.entries() == [
        ("apply-begin", {"txn": "a", "originals": [["k", {"value": "1"}]]}),
        ("apply-commit", {"txn": "a"})]
    assert j.size() == j.path.stat().st_size


def test_a_torn_tail_is_ignored_and_cut_off_before_the_next_record(tmp_path: Path):
    j = FileJournal(tmp_path / "j")
    j.record("apply-begin", {"txn": "a"})
    with open(j.path, "ab") as f:
        f.write(b'{"step": "apply-commit", "data": {"txn": "a"}}')  # no newline: torn
    fresh = FileJournal(j.path)
    assert [s for s, _ in fresh.entries()] == ["apply-begin"]
    fresh.record("revert-begin", {"txn": "b"})
    assert [x["step"] for x in lines(j.path)] == ["apply-begin", "revert-begin"]


def test_a_change_by_someone_else_is_seen(tmp_path: Path):
    j = FileJournal(tmp_path / "j")
    j.record("apply-begin", {"txn": "a"})
    assert len(j.entries()) == 1
    other = FileJournal(j.path)
    other.record("apply-commit", {"txn": "a"})  # appended behind j's back
    assert [s for s, _ in j.entries()] == ["apply-begin", "apply-commit"]
    other.replace([("state", {"profile": "x"})])  # a new file under the name
    assert j.entries() == [("state", {"profile": "x"})]
    j.record("apply-begin", {"txn": "b"})
    assert [x["step"] for x in lines(j.path)] == ["state", "apply-begin"]
