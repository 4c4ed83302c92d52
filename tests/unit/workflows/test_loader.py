"""The workflow model and loader: good files load, bad ones fail naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from oseprovd.errors import InvalidArguments, NotFound
from oseprovd.workflows.loader import WorkflowCatalog, WorkflowFileError, load_file
from oseprovd.workflows.models import ResetStep, SnapshotStep, TuningStep

GOOD = """
description = "clean up and tune for throughput"

[[step]]
kind = "snapshot"
description = "before the clean-up"

[[step]]
kind = "reset"
profile = "light"

[[step]]
kind = "reset"
selection = { profile = "light", classes = ["cache"], exclude_users = ["bob"] }

[[step]]
kind = "tuning"
profile = "throughput"
"""


def write(d: Path, name: str, text: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.toml"
    p.write_text(text)
    return p


def test_good_file(tmp_path: Path) -> None:
    wf = load_file(write(tmp_path, "tidy", GOOD))
    assert wf.name == "tidy"
    assert [type(s) for s in wf.steps] == [SnapshotStep, ResetStep, ResetStep, TuningStep]
    s2 = wf.steps[2]
    assert isinstance(s2, ResetStep)
    assert s2.resolved().classes == ("cache",) and s2.resolved().exclude_users == ("bob",)
    step1 = wf.steps[1]
    assert isinstance(step1, ResetStep) and step1.resolved().profile == "light"


@pytest.mark.parametrize(("text", "key"), [
    ('[[step]]\nkind = "reboot"\n', "step[1]"),
    ('[[step]]\nkind = "reset"\nprofile = "light"\nforce = true\n', "step[1].force"),
    ('[[step]]\nkind = "tuning"\n', "step[1].profile"),
    ('[[step]]\nkind = "reset"\n', "step[1]"),
    ('[[step]]\nkind = "reset"\nprofile = "light"\nselection = {profile="light"}\n',
     "step[1]"),
    ('[[step]]\nkind = "reset"\nselection = { profile = "light", clases = ["x"] }\n',
     "step[1].selection.clases"),
    ('[[step]]\nkind = "snapshot"\nconfig = "../etc"\n', "step[1].config"),
    ('descripton = "typo"\n[[step]]\nkind = "snapshot"\n', "descripton"),
    ('description = "no steps"\n', "steps"),
])
def test_bad_files_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, "bad", text)
    with pytest.raises(WorkflowFileError) as info:
        load_file(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    assert msg.split(": ", 1)[1].startswith(f"{key}: ")


def test_not_toml_and_name_mismatch(tmp_path: Path) -> None:
    with pytest.raises(WorkflowFileError, match=r"bad\.toml: not valid TOML"):
        load_file(write(tmp_path, "bad", "[[step]\n"))
    with pytest.raises(WorkflowFileError, match=r"other\.toml: name: 'x' differs"):
        load_file(write(tmp_path, "other", 'name = "x"\n[[step]]\nkind = "snapshot"\n'))
    with pytest.raises(WorkflowFileError, match="file name must be"):
        load_file(write(tmp_path, "Bad Name", '[[step]]\nkind = "snapshot"\n'))


def test_catalog_lists_good_and_reports_bad(tmp_path: Path) -> None:
    d = tmp_path / "workflows.d"
    write(d, "tidy", GOOD)
    write(d, "broken", '[[step]]\nkind = "tuning"\n')
    (d / "README").write_text("not a workflow")
    cat = WorkflowCatalog(d)
    good, bad = cat.list()
    assert [w.name for w in good] == ["tidy"]
    assert len(bad) == 1 and "broken.toml" in bad[0] and "step[1].profile" in bad[0]
    assert cat.get("tidy").name == "tidy"
    with pytest.raises(NotFound):
        cat.get("nope")
    with pytest.raises(InvalidArguments):
        cat.get("../tidy")
    assert WorkflowCatalog(tmp_path / "missing").list() == ([], [])
