"""A workflow as an admin writes it (<root>/etc/ose/workflows.d/NAME.toml) and a run of
it as the runner records it. Unknown keys are refused: a typo must not silently drop a
step's safety setting."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oseprovd.reset.models import Selection

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,47}$"
RUN_ID_PATTERN = r"^w[0-9a-f]{16}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SnapshotStep(_Strict):
    """A snapshot of a config (default "root") kept as a named point to return to."""

    kind: Literal["snapshot"]
    config: str = Field("root", pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")
    description: str = Field("", max_length=200)


class ResetStep(_Strict):
    """A reset with a profile, or a saved selection (the Selection fields inline)."""

    kind: Literal["reset"]
    profile: str | None = Field(None, max_length=48)
    selection: Selection | None = None
    description: str = Field("", max_length=200)

    @model_validator(mode="after")
    def _one_source(self) -> ResetStep:
        if (self.profile is None) == (self.selection is None):
            raise ValueError("a reset step names either a profile or a selection")
        return self

    def resolved(self) -> Selection:
        return self.selection if self.selection is not None else Selection(
            profile=self.profile or "light")


class TuningStep(_Strict):
    """Apply a tuning profile."""

    kind: Literal["tuning"]
    profile: str = Field(max_length=64)
    skip_power: bool = False
    description: str = Field("", max_length=200)


Step = Annotated[SnapshotStep | ResetStep | TuningStep, Field(discriminator="kind")]


class Workflow(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field("", max_length=500)
    steps: tuple[Step, ...] = Field(min_length=1, max_length=32)


StepState = Literal["running", "done", "failed", "skipped", "rolled_back",
                    "rollback_failed"]
RunState = Literal["running", "done", "failed", "interrupted", "rolling_back",
                   "rolled_back", "rollback_failed"]


class StepRecord(BaseModel):
    """What one step did and what undoes it: the snapshot it made, the reset execution
    (rolled back by the reset engine), the tuning profile active before (re-applied, or
    the originals restored when there was none)."""

    index: int
    kind: str
    state: StepState
    detail: str = ""
    snapshot: str | None = None
    execution: str | None = None
    tuning_previous: str | None = None
    tuning_applied: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)


class RunRecord(BaseModel):
    id: str = Field(pattern=RUN_ID_PATTERN)
    workflow: str
    dry_run: bool
    state: RunState
    started: datetime
    finished: datetime | None = None
    job_id: int | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    error: str = ""
