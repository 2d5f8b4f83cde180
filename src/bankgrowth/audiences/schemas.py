"""Request and response shapes of audiences (``XCreate`` / ``XRead``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

CODE = r"^[A-Za-z0-9_.-]{1,64}$"


class Model(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class Definition(Model):
    """A rule, as JSON (``rule``) or as text (``text``) — exactly one of them."""

    rule: dict[str, Any] | None = Field(default=None, description="The condition tree (see the rule JSON Schema).")
    text: str | None = Field(
        default=None,
        max_length=20_000,
        description="The same rule as text, e.g. stage = 'super' and txn_count_30d >= 3.",
    )

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.rule is None) == (self.text is None):
            raise ValueError("give the rule as JSON (rule) or as text (text), not both and not neither")
        return self


class AudienceCreate(Definition):
    code: str = Field(pattern=CODE)
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=400)
    org_id: str | None = Field(default=None, description="Owner org; the caller's org when left out.")


class ListUpload(Model):
    code: str = Field(pattern=CODE)
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=400)
    org_id: str | None = None
    customer_ids: list[str] = Field(min_length=1, max_length=5_000_000, description="The bank's customer numbers.")


class AudienceRead(Model):
    id: int
    code: str
    name_zh: str
    name_en: str
    description: str
    org_id: str
    kind: str
    version: int
    active: bool
    created_by: str
    created_at: datetime
    updated_at: datetime


class VersionRead(Model):
    version: int
    rule: dict[str, Any] | None
    text: str | None
    list_size: int | None
    unknown_ids: list[Any] | None
    created_by: str
    created_at: datetime


class AudienceDetail(AudienceRead):
    definition: VersionRead


class CountRead(Model):
    code: str
    version: int
    as_of: date
    customers: int
    milliseconds: float


class SnapshotRead(Model):
    id: int
    audience_id: int
    version: int
    as_of: date
    org_id: str
    members: int
    created_by: str
    created_at: datetime


class DiffRead(Model):
    before: int
    after: int
    only_before: int
    only_after: int
    both: int
    joined_sample: list[int]
    left_sample: list[int]


class OverlapRead(Model):
    codes: list[str]
    as_of: date
    counts: list[list[int]] = Field(description="counts[i][j]: customers in both audience i and audience j.")


class LookalikeCreate(Model):
    target: int = Field(ge=1, le=10_000_000, description="How many customers to find.")
    save_as: str | None = Field(default=None, pattern=CODE, description="Save them as a list audience of this code.")


class LookalikeRead(Model):
    seed: int
    population: int
    target: int
    holdout_recall: float = Field(description="Share of held-out seed members the model ranks within the top target.")
    holdout_auc: float
    lift: float = Field(description="holdout_recall divided by the share of the population chosen.")
    top_features: list[tuple[str, float]]
    sample: list[int] = Field(description="The first 100 customers chosen, best first.")
    saved_as: str | None


class ClusterRead(Model):
    number: int
    customers: int
    share: float
    means: dict[str, float]
    distinctive: list[tuple[str, float]]
    stages: dict[str, int]
    suggested_name: str


class ClusteringRead(Model):
    k: int
    features: list[str]
    customers: int
    inertia: float
    clusters: list[ClusterRead]
