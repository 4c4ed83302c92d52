"""Results and requests of the reset engine (pydantic; the bus layer converts them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ItemClass = Literal["system", "app", "user", "cache", "log", "temp"]
Risk = Literal["safe", "caution", "destructive"]
ItemKind = Literal["file", "dir", "symlink", "other"]
BaselineSource = Literal["captured", "distribution"]
# rollback_interrupted: a rollback was under way when the process died; only a
# rollback may continue it
ExecutionState = Literal["running", "done", "failed", "interrupted", "rolled_back",
                         "rolling_back", "rollback_interrupted"]

CLASSES: tuple[ItemClass, ...] = ("system", "app", "user", "cache", "log", "temp")
RISKS: tuple[Risk, ...] = ("safe", "caution", "destructive")
NonNegative = Annotated[int, Field(ge=0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- baseline -----------------------------------------------------------------------

class BaselinePackage(_Frozen):
    name: str
    version: str
    architecture: str
    manual: bool
    priority: str | None = None


class Conffile(_Frozen):
    package: str
    path: str  # absolute, as dpkg records it
    md5: str
    obsolete: bool = False


class Account(_Frozen):
    name: str
    id: int
    home: str = ""  # users only
    shell: str = ""
    members: tuple[str, ...] = ()  # groups only


class EnabledService(_Frozen):
    wants_dir: str  # e.g. etc/systemd/system/multi-user.target.wants
    unit: str
    target: str  # where the link points


class Baseline(_Frozen):
    """"Factory" for this machine: what was there when the baseline was captured."""

    source: BaselineSource
    captured: datetime
    packages: tuple[BaselinePackage, ...]
    conffiles: tuple[Conffile, ...] = ()
    users: tuple[Account, ...] = ()
    groups: tuple[Account, ...] = ()
    services: tuple[EnabledService, ...] = ()
    note: str = ""
    # on btrfs: the important snapshot of the root taken at capture time, the other
    # kind of factory reset (ResetEngine.rollback_to_baseline)
    snapshot: str | None = None


# -- selection and plans ------------------------------------------------------------

Strings = Annotated[tuple[Annotated[str, Field(max_length=4096)], ...],
                    Field(max_length=256)]
Names = Annotated[tuple[Annotated[str, Field(max_length=128)], ...], Field(max_length=256)]


class Selection(_Frozen):
    """What to analyze or plan: a profile, narrowed or widened item by item.

    Paths are relative to the target root (a leading "/" is accepted). Include filters
    narrow (an item must match one of each non-empty include list); exclude filters
    drop; `add_paths` adds trees the profile doesn't name (their contents, class from
    the owner, risk caution)."""

    profile: str = Field(default="light", max_length=48)
    include_paths: Strings = ()
    exclude_paths: Strings = ()
    include_globs: Strings = ()
    exclude_globs: Strings = ()
    classes: tuple[ItemClass, ...] = ()
    exclude_classes: tuple[ItemClass, ...] = ()
    packages: Names = ()
    exclude_packages: Names = ()
    users: Names = ()
    exclude_users: Names = ()
    max_risk: Risk = "destructive"
    add_paths: Strings = ()


class Totals(_Frozen):
    count: NonNegative = 0
    bytes: NonNegative = 0  # allocated bytes (st_blocks * 512), what deleting frees


class PackageChange(_Frozen):
    # install: a baseline package removed since (nuclear), from a local .deb
    action: Literal["remove", "purge", "install"]
    name: str
    architecture: str
    version: str
    reason: str
    requested: bool = True  # False: apt removes it along (dependent, or now unneeded)
    deb: str = ""  # install: the .deb under the root ("" = none at hand: not installed)


class KeptPackage(_Frozen):
    """Entries a rule matched that dpkg lists for this package: classified, never
    removed (removing the package is what takes them)."""

    package: str
    priority: str  # dpkg's Priority ("" when it has none)
    cls: Literal["system", "app"]  # system: Essential or required/important/standard
    count: NonNegative
    reason: str


class AnalyzeResult(_Frozen):
    profile: str
    baseline_source: BaselineSource
    totals: Totals
    by_class: dict[str, Totals]
    by_risk: dict[str, Totals]
    by_rule: dict[str, Totals]
    kept_owned_by_package: NonNegative = 0  # files a rule matched but dpkg owns: kept
    kept_by_package: tuple[KeptPackage, ...] = ()  # the same, per owning package
    skipped_mounts: tuple[str, ...] = ()
    package_changes: tuple[PackageChange, ...] = ()
    skel_trees: tuple[str, ...] = ()  # homes that get /etc/skel copied in after removal
    users_removed: tuple[str, ...] = ()  # accounts created after the baseline (nuclear)
    # deep: modified conffiles -> (path, package, dpkg's md5, .deb in apt's cache)
    conffiles_restored: tuple[tuple[str, str, str, str], ...] = ()
    # btrfs: the baseline's snapshot the whole root can be rolled back to instead
    # (rollback_to_baseline; reboot required for the running root), else None
    baseline_rollback: str | None = None
    notes: tuple[str, ...] = ()


class DiskUsage(_Frozen):
    filesystem: str  # mount point, relative to nothing: as the kernel names it
    used_before: NonNegative
    used_after: NonNegative
    size: NonNegative


class Plan(_Frozen):
    id: str
    digest: str
    created: datetime
    selection: Selection
    analysis: AnalyzeResult
    disk: tuple[DiskUsage, ...] = ()
    packages_before: NonNegative = 0
    packages_after: NonNegative = 0
    highest_risk: Risk = "safe"
    item_count: NonNegative = 0


class PlanItem(_Frozen):
    seq: NonNegative
    path: str  # relative to the target root; non-UTF-8 bytes as surrogate escapes
    kind: ItemKind
    size: NonNegative
    bytes: NonNegative
    uid: int
    gid: int
    ino: int
    dev: int
    mtime_ns: int
    cls: ItemClass
    risk: Risk
    rule: str
    reason: str
    owner: str = ""  # user name of uid, when known


class SkippedItem(_Frozen):
    path: str
    reason: str


class ExecuteOptions(_Frozen):
    dry_run: bool = False


class ExecuteResult(_Frozen):
    execution: str
    plan: str
    dry_run: bool
    removed: NonNegative
    removed_bytes: NonNegative
    already_gone: NonNegative = 0
    skipped: tuple[SkippedItem, ...] = ()
    skipped_count: NonNegative = 0
    rollback_point: str | None = None
    packages_removed: tuple[str, ...] = ()
    packages_installed: tuple[str, ...] = ()  # baseline packages put back (nuclear)
    packages_not_installed: tuple[str, ...] = ()  # name: why (no .deb at hand, dpkg failed)
    conffiles_restored: tuple[str, ...] = ()
    state: ExecutionState = "done"


class ExecutionRecord(_Frozen):
    id: str
    plan: str
    digest: str
    state: ExecutionState
    started: datetime
    finished: datetime | None = None
    snapshot: str | None = None
    job_id: int | None = None
    result: ExecuteResult | None = None


class ResetRollbackResult(_Frozen):
    execution: str
    snapshot: str
    restored: NonNegative
    reboot_required: bool = False


class RecoveryDecision(_Frozen):
    """What a killed execution left: `deleting` started or not, what can be done."""

    execution: str
    plan: str
    snapshot: str | None
    saved: bool  # the rollback point holds every item
    deleting: bool  # some deletion may have happened
    finished: bool
    rolled_back: bool
    rollback_started: bool = False  # then only rollback may continue it
