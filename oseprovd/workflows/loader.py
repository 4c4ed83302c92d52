"""Workflows from the admin dir, <root>/etc/ose/workflows.d/NAME.toml: the name is the
file's stem. A file that doesn't parse or validate is an error naming the file and the
key, never skipped silently."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import ValidationError

from oseprovd.errors import InvalidArguments, NotFound
from oseprovd.workflows.models import NAME_PATTERN, Workflow

MAX_FILE = 1 << 20
MAX_FILES = 256


class WorkflowFileError(InvalidArguments):
    """A workflow file that does not parse or validate (InvalidArgs on the bus)."""


def _key(loc: tuple[int | str, ...]) -> str:
    """("steps", 0, "tuning", "profile") -> step[1].profile: the Nth [[step]] table of
    the file, counted from 1 (pydantic's discriminator tags dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out = ("step" if out == "steps" else out) + f"[{part + 1}]"
        elif part in ("snapshot", "reset", "tuning") and out.endswith("]"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(file)"


def describe(path: Path, exc: ValidationError) -> str:
    errors = exc.errors()
    # a bad step also fails the length check of "steps": say only what is wrong
    if any(len(e["loc"]) > 1 for e in errors):
        errors = [e for e in errors if not (e["type"] == "too_short" and len(e["loc"]) == 1)]
    problems = [f"{_key(tuple(e['loc']))}: {e['msg']}" for e in errors]
    return f"{path}: " + "; ".join(problems)


def load_file(path: Path) -> Workflow:
    name = path.stem
    if not re.fullmatch(NAME_PATTERN, name):
        raise WorkflowFileError(f"{path}: the file name must be a workflow name "
                                "(lower-case letters, digits, - and _)")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE + 1)
    except OSError as exc:
        raise WorkflowFileError(f"{path}: cannot read it: {exc.strerror}") from None
    if len(raw) > MAX_FILE:
        raise WorkflowFileError(f"{path}: larger than {MAX_FILE} bytes")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise WorkflowFileError(f"{path}: not valid TOML: {exc}") from None
    if data.setdefault("name", name) != name:
        raise WorkflowFileError(f"{path}: name: {data['name']!r} differs from the file "
                                f"name {name!r}")
    data["steps"] = data.pop("step", data.get("steps", []))
    try:
        return Workflow.model_validate(data)
    except ValidationError as exc:
        raise WorkflowFileError(describe(path, exc)) from None


class WorkflowCatalog:
    """The workflows of one directory, read on every call (an admin edits them)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def files(self) -> list[Path]:
        try:
            found = sorted(p for p in self.directory.iterdir()
                           if p.suffix == ".toml" and p.is_file())
        except FileNotFoundError:
            return []
        return found[:MAX_FILES]

    def list(self) -> tuple[list[Workflow], list[str]]:
        """The valid workflows and, for the others, the error naming file and key."""
        good: list[Workflow] = []
        bad: list[str] = []
        for path in self.files():
            try:
                good.append(load_file(path))
            except WorkflowFileError as exc:
                bad.append(str(exc))
        return good, bad

    def get(self, name: str) -> Workflow:
        if not re.fullmatch(NAME_PATTERN, name):
            raise InvalidArguments(f"invalid workflow name {name!r}")
        path = self.directory / f"{name}.toml"
        if not path.is_file():
            raise NotFound(f"no workflow {name!r} in {self.directory}; see "
                           "`osectl workflow list`")
        return load_file(path)
