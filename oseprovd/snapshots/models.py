"""Configs, snapshot records and results (pydantic; the bus layer converts them)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from oseprovd.snapshots.ids import CONFIG_NAME, SNAPSHOT_ID
from oseprovd.system.rootfs import split_rel

BackendName = Literal["btrfs", "copy", "lvm"]
SnapshotKind = Literal["single", "pre", "post"]
CleanupAlgorithm = Literal["", "number", "timeline"]
ChangeKind = Literal["created", "deleted", "content", "metadata"]
NonNegative = Annotated[int, Field(ge=0)]
# LVM names: letters, digits, + _ . -; not starting with "-" (an option) or "." (no "."
# or ".."); at most 63 characters each here.
LVM_NAME = r"[A-Za-z0-9+_][A-Za-z0-9+_.-]{0,62}"
LVM_VOLUME = rf"^{LVM_NAME}/{LVM_NAME}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retention(_Strict):
    """Snapper's defaults (snapper-configs(5)); ages in seconds."""

    number_limit: NonNegative = 50
    number_limit_important: NonNegative = 10
    number_min_age: NonNegative = 1800
    timeline_create: bool = True
    timeline_limit_hourly: NonNegative = 10
    timeline_limit_daily: NonNegative = 10
    timeline_limit_weekly: NonNegative = 0
    timeline_limit_monthly: NonNegative = 10
    timeline_limit_yearly: NonNegative = 10
    timeline_min_age: NonNegative = 1800
    # Below this fraction of free space, cleanup deletes more number/timeline
    # snapshots, oldest first (snapper's FREE_LIMIT); 0 turns it off.
    free_limit: Annotated[float, Field(ge=0, le=1)] = 0.2


class SnapshotConfig(_Strict):
    """One snapshot config (a TOML file in the snapshots.d directory)."""

    name: str = Field(pattern=CONFIG_NAME.pattern)
    backend: BackendName
    # btrfs: the live subvolume; copy: the tree that recorded paths are relative to.
    path: Path
    # Where snapshots (btrfs) or the rollback store (copy) live; root-owned, 0700.
    snapshot_dir: Path
    # btrfs only: this subvolume is the running system's root, so rollback makes a
    # writable copy the default subvolume and a reboot finishes it.
    root_subvolume: bool = False
    # copy only: paths recorded whole on every snapshot of this config.
    whole_paths: tuple[str, ...] = ()
    # lvm only: the thin logical volume "vg/lv" whose filesystem is mounted at `path`.
    volume: str | None = Field(None, pattern=LVM_VOLUME)
    retention: Retention = Retention()

    @field_validator("path", "snapshot_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        if not v.is_absolute() or ".." in v.parts:
            raise ValueError("must be an absolute path without '..'")
        return v

    def excluded(self) -> frozenset[str]:
        """The snapshot dir, relative to the tree, when it lies inside it: never part
        of what is saved, compared or restored."""
        try:
            rel = self.snapshot_dir.relative_to(self.path)
        except ValueError:
            return frozenset()
        return frozenset({str(rel)}) if str(rel) != "." else frozenset()

    @field_validator("whole_paths")
    @classmethod
    def _relative(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple("/".join(split_rel(p)) for p in v)


class SnapshotRecord(_Strict):
    """What the engine knows about one snapshot; only recorded snapshots are ever used."""

    id: str = Field(pattern=SNAPSHOT_ID.pattern)
    config: str
    number: int = Field(ge=1)
    backend: BackendName
    kind: SnapshotKind = "single"
    pre_id: str | None = None
    created: datetime
    description: Annotated[str, Field(max_length=1024)] = ""
    userdata: dict[str, str] = {}
    job_id: int | None = None
    important: bool = False
    cleanup: CleanupAlgorithm = ""
    size: int | None = None
    # Backend identity of the saved thing: btrfs subvolume uuid, copy store token.
    uuid: str = ""


class DiffEntry(_Strict):
    """One changed path. `path` is relative to the config's tree; bytes that aren't
    UTF-8 are kept as surrogate escapes (os.fsencode gives the real name back)."""

    path: str
    change: ChangeKind


class UndoResult(_Strict):
    snapshot: str
    paths: tuple[str, ...]
    changed: int
    skipped: tuple[str, ...] = ()


class RollbackResult(_Strict):
    snapshot: str
    reboot_required: bool
    # The snapshot that keeps what was live before (btrfs swap), so a rollback can be
    # rolled back too.
    previous: str | None = None
    new_default_subvolume: int | None = None


class CleanupResult(_Strict):
    config: str
    deleted: tuple[str, ...]
    kept: int


Outcome = Literal["finished", "reverted", "nothing", "failed"]


class RecoveryOutcome(_Strict):
    """What recovery did with one interrupted operation. "failed": it could not (the
    message says why); the operation stays open and is tried again next time."""

    op: str
    action: str
    outcome: Outcome
    message: str = ""
