"""Response shapes of the insight routes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field


class StageCountRead(BaseModel):
    stage: str
    zh: str
    en: str
    customers: int
    share: float


class TrendRead(BaseModel):
    """``counts[stage][i]`` is the number of customers in ``stage`` on ``days[i]``."""

    days: list[date] = Field(description="days with stored counts in the span, oldest first")
    stages: list[StageCountRead] = Field(description="the stages with their labels, on the last day")
    counts: dict[str, list[int]]
    gaps: list[date] = Field(description="days in the span that were not run (or were replaced and not run again)")


class MatrixRead(BaseModel):
    """``counts[i][j]`` is the number of customers in row ``rows[i]`` and column ``columns[j]``."""

    rows: list[str]
    columns: list[str]
    counts: list[list[int]]
    total: int


class InsightRunRead(BaseModel):
    """One nightly run as it was logged. The customer counts are bank-wide, so they are null for
    a user below HQ."""

    as_of: date
    mode: str = Field(description="full or incremental")
    reason: str = Field(description="why it was a full run; empty for an incremental one")
    seconds: float
    ran_at: datetime
    version: str = Field(
        description="kept: its version is stored; stale: stored, but data of its days arrived after it "
        "was run (`insight run --restate` runs it again); replaced: that day or an earlier one was run again "
        "later; dropped: past retention"
    )
    customers: int | None = Field(description="customers in the version")
    changed: int | None = Field(
        description="customers whose stored row the run wrote, replaced or not (a run logged before this was "
        "recorded: while its version is stored)"
    )
    transitions: int | None = Field(
        description="stage changes the run logged; null when replaced or with no earlier version to compare"
    )
    since: date | None = Field(description="the version those stage changes are counted from")


class InsightStatusRead(BaseModel):
    """Where the nightly run stands: for a dashboard, and for a probe that alerts when the run lags."""

    kept: list[date] = Field(description="the stored tag versions, oldest first")
    last_data_day: date | None = Field(description="the last business day with transactions")
    current: bool = Field(
        description="the latest version is what a run of it would store now: it is of the last day with data, "
        "no data of its day or before arrived since it was run, and the definitions are unchanged"
    )
    outdated: str = Field(description="why it is not current; empty when it is")
    stale: list[date] = Field(description="stored versions computed before some of their data arrived")
    last_run: InsightRunRead | None = Field(description="the latest logged run")


class TagRead(BaseModel):
    name: str
    zh: str
    en: str
    description: str
    category: str
    kind: str
    type: str
    unit: str
    refresh: str


class ImportedTagRead(TagRead):
    """An imported tag: its definition and the file its values came from."""

    file: str
    rows: int  # customers with a value
    rejected: int  # lines of that file left out (quarantined or duplicates)
    imported_at: datetime


class LineProblem(BaseModel):
    """A line of a file that was not loaded, and why."""

    line: int
    field: str
    expected: str
    found: str


class TagImported(BaseModel):
    """What an import did: ``read == loaded + quarantined + duplicates``. The first problems are
    listed; ``problem_count`` says how many there were (all are in the warehouse's quarantine)."""

    tag: TagRead
    file: str
    load_id: str
    read: int
    loaded: int
    quarantined: int
    duplicates: int
    problems: list[LineProblem]
    problem_count: int
    warnings: list[str]


class BinRead(BaseModel):
    """Customers whose value is at least ``low`` and below ``high`` (in the tag's unit)."""

    low: float
    high: float
    customers: int


class TagCoverageRead(TagRead):
    """A tag's definition and how much of the version it covers, in the caller's subtree."""

    rows: int = Field(description="Customers in the version (in the caller's subtree).")
    coverage: float = Field(description="Share of those customers with a value, 0 to 1.")
    nonzero: float | None = Field(description="Numeric and boolean tags: share with a non-zero or true value.")
    summary: dict[str, Any] = Field(
        description="Numeric tags: min, median (approximate), max and mean; timestamp tags: min and max."
    )


class TagStatsRead(TagCoverageRead):
    top: list[tuple[Any, int]]
    histogram: list[BinRead] = []


class CustomerViewRead(BaseModel):
    customer_id: int
    profile: dict[str, Any]
    revealed: bool
    tags_as_of: date | None
    tags: dict[str, Any]
    stage_history: list[dict[str, Any]]
    stage_history_since: date | None = Field(
        description="The first day the nightly run stored: stage changes are logged from the day after it."
    )
    bindings: list[dict[str, Any]]
    recent_transactions: list[dict[str, Any]]


class ChannelProfile(BaseModel):
    """What a channel application may know to personalise a page: no personal data."""

    customer_id: int
    as_of: date | None
    stage: str | None
    value_tier: str | None
    rfm_segment: str | None
    preferred_institution: str | None
