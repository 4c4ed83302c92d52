"""Reset profiles: TOML data with `include` inheritance.

Shipped in oseprovd/data/reset-profiles/, extended (or replaced, by name) by files in
<root>/etc/ose/reset-profiles.d/. A profile has a description, `include` (profiles
whose rules come first) and rules:

    [[rule]]
    id = "user-cache"            # unique within the resolved profile; a later one replaces
    class = "cache"              # cache, log, temp, app, user (system is never a rule's)
    risk = "safe"                # safe, caution, destructive
    paths = ["{home}/.cache"]    # trees whose contents are candidates; globs allowed,
                                 # {home} = each user's home (uid 0 and >= 1000),
                                 # {user_home} = homes of uid >= 1000 only
    names = ["*.gz"]             # only entries whose name matches (then no directories)
    min_age_days = 0             # only entries not modified for this long
    keep_newest_bytes = 0        # the newest matches up to this many bytes stay (needs names)
    exclude = ["*/lock"]         # path globs (relative to the root) left alone

and package actions for the deeper profiles ([packages]: remove_after_baseline, ...).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from oseprovd.errors import InvalidArguments, NotFound, OseError
from oseprovd.reset.models import ItemClass, Risk
from oseprovd.system.rootfs import TargetRoot, split_rel

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,47}$")
RULE_ID = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "reset-profiles"
EXTRA_DIR = "etc/ose/reset-profiles.d"
MAX_FILE = 256 * 1024
MAX_INCLUDE_DEPTH = 8


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidArguments(f"invalid profile name {name!r}: lowercase letters, digits, "
                               "'_' and '-', starting with a letter")
    return name


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(pattern=RULE_ID.pattern)
    cls: ItemClass = Field(alias="class")
    risk: Risk
    paths: tuple[str, ...] = Field(min_length=1)
    names: tuple[str, ...] = ()
    min_age_days: float = Field(default=0, ge=0)
    # the newest matching files whose allocated bytes add up to at most this stay, per
    # tree (journalctl --vacuum-size for archived journals); needs `names`
    keep_newest_bytes: int = Field(default=0, ge=0)
    exclude: tuple[str, ...] = ()
    top_level: bool = False  # `names` pick the tree's top entries, each taken whole
    skel: bool = False  # after removal, /etc/skel is copied into each tree (homes)
    description: str = Field(default="", max_length=500)

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for p in v:
            parts = split_rel(p)  # no "..", no NUL
            if not parts:
                raise ValueError("a rule can't name the root itself")
            out.append("/".join(parts))
        return tuple(out)

    @model_validator(mode="after")
    def _budget_needs_names(self) -> Rule:
        # with names and not top_level no directory is ever an item, so keeping some
        # files never leaves a directory item that would take them along
        if self.keep_newest_bytes and (not self.names or self.top_level):
            raise ValueError("keep_newest_bytes needs `names` (and no top_level)")
        return self

    @field_validator("cls")
    @classmethod
    def _not_system(cls, v: ItemClass) -> ItemClass:
        if v == "system":
            raise ValueError("a rule can't delete system files")
        return v


class PackageActions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    remove_after_baseline: bool = False  # medium: manual packages not in the baseline
    purge_data: bool = False  # deep: purge them, with /var/lib/<pkg>
    restore_conffiles: bool = False  # deep: modified conffiles back to pristine
    restore_baseline: bool = False  # nuclear: package set back to the baseline exactly
    remove_new_users: bool = False  # nuclear


class ProfileFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(default="", max_length=500)
    include: tuple[str, ...] = ()
    rule: tuple[Rule, ...] = ()
    packages: PackageActions = PackageActions()


class Profile(BaseModel):
    """A profile with its includes resolved: rules in order, the package actions of all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    rules: tuple[Rule, ...]
    packages: PackageActions
    sources: tuple[str, ...]  # files it was made from, for display


def _merge_actions(a: PackageActions, b: PackageActions) -> PackageActions:
    return PackageActions(**{k: getattr(a, k) or getattr(b, k)
                             for k in PackageActions.model_fields})


class ProfileCatalog:
    def __init__(self, root: TargetRoot | None = None,
                 shipped_dir: Path = SHIPPED_DIR) -> None:
        self.root = root
        self.shipped_dir = shipped_dir

    def _files(self) -> dict[str, tuple[str, bytes]]:
        files: dict[str, tuple[str, bytes]] = {}
        for path in sorted(self.shipped_dir.glob("*.toml")):
            files[path.stem] = (str(path), path.read_bytes())
        if self.root is not None:
            try:
                fd = self.root.open_dir(EXTRA_DIR)
            except (FileNotFoundError, NotADirectoryError, OseError):
                fd = -1
            if fd >= 0:
                try:
                    names = sorted(n for n in os.listdir(fd) if n.endswith(".toml"))
                finally:
                    os.close(fd)
                for n in names:
                    try:
                        data = self.root.read_bytes(f"{EXTRA_DIR}/{n}", MAX_FILE)
                    except (OSError, OseError) as exc:
                        raise InvalidArguments(f"{EXTRA_DIR}/{n}: {exc}") from None
                    files[n[:-5]] = (f"/{EXTRA_DIR}/{n}", data)
        for name in files:
            check_name(name)
        return files

    def _parse(self, where: str, data: bytes) -> ProfileFile:
        try:
            raw: dict[str, Any] = tomllib.loads(data.decode("utf-8"))
            return ProfileFile.model_validate(raw)
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArguments(f"{where}: {exc}") from None
        except ValidationError as exc:
            raise InvalidArguments(f"{where}: {exc}") from None

    def names(self) -> list[str]:
        return sorted(self._files())

    def list(self) -> list[Profile]:
        return [self.get(n) for n in self.names()]

    def get(self, name: str) -> Profile:
        check_name(name)
        files = self._files()
        if name not in files:
            raise NotFound(f"no reset profile {name!r}; known: {', '.join(sorted(files))}")
        rules: dict[str, Rule] = {}
        actions = PackageActions()
        sources: list[str] = []
        description = ""

        def visit(n: str, stack: tuple[str, ...]) -> None:
            nonlocal actions, description
            if n in stack:
                raise InvalidArguments(f"profile {n!r} includes itself: "
                                       f"{' -> '.join((*stack, n))}")
            if len(stack) > MAX_INCLUDE_DEPTH:
                raise InvalidArguments(f"profile {name!r}: includes nest too deep")
            if n not in files:
                raise InvalidArguments(f"profile {stack[-1]!r} includes unknown {n!r}")
            where, data = files[n]
            pf = self._parse(where, data)
            for inc in pf.include:
                visit(check_name(inc), (*stack, n))
            for rule in pf.rule:
                rules.pop(rule.id, None)
                rules[rule.id] = rule
            actions = _merge_actions(actions, pf.packages)
            if where not in sources:
                sources.append(where)
            if n == name:
                description = pf.description

        visit(name, ())
        return Profile(name=name, description=description, rules=tuple(rules.values()),
                       packages=actions, sources=tuple(sources))
