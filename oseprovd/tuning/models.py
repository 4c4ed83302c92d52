"""Results of the tuning engine (pydantic, converted to D-Bus values by the bus layer)."""

from __future__ import annotations

from pydantic import BaseModel

from oseprovd.tuning.conditions import Reason
from oseprovd.tuning.knob import DriftItem, KnobOutcome, PlanItem


class Plan(BaseModel):
    profile: str
    items: list[PlanItem]
    digest: str  # sha256 of the items: apply(expected_digest=...) executes only this plan
    previous_profile: str | None  # reverted first when switching


class ApplyResult(BaseModel):
    profile: str
    dry_run: bool
    plan: Plan
    outcomes: list[KnobOutcome] = []
    reverted_previous: str | None = None
    complete: bool = True  # every applicable knob now has its target


class VerifyResult(BaseModel):
    profile: str | None
    items: list[DriftItem]
    drifted: int


class RestoreOutcome(BaseModel):
    knob: str
    original: str | None
    status: str  # "restored", "gone" (knob no longer exists), "failed"
    detail: str = ""


class RevertResult(BaseModel):
    profile: str | None
    outcomes: list[RestoreOutcome]
    complete: bool


class RecoveryResult(BaseModel):
    action: str  # "none", "rolled-back", "finished-revert"
    profile: str | None
    revert: RevertResult | None = None


class Candidate(BaseModel):
    profile: str
    priority: int
    matched: bool
    reasons: list[Reason]


class Recommendation(BaseModel):
    profile: str
    reasons: list[Reason]  # why, fact by fact
    summary: str
    candidates: list[Candidate]


class ProfileInfo(BaseModel):
    name: str
    description: str
    origin: str
    includes: list[str]
    priority: int


class HoldInfo(BaseModel):
    cookie: int
    profile: str
    reason: str
    app_id: str
