"""Insight services: the nightly run, lifecycle views, the value grid, the tag catalog and the
customer view. Front ends call these; they return plain values."""

from __future__ import annotations

import hashlib
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import ibis

from bankgrowth.errors import Invalid, NotFound, closest
from bankgrowth.insight import imported, store
from bankgrowth.insight.compute import COUNTING, STAGE_INPUTS, build_base, build_tags
from bankgrowth.insight.incremental import build_incremental, scratch_tables
from bankgrowth.insight.lifecycle import STAGE_CODES, STAGES, Thresholds
from bankgrowth.insight.tags import BUILTIN_TAGS, Agg, Tag, end_of_day
from bankgrowth.insight.value import VALUE_TIERS
from bankgrowth.platform.access import Scope
from bankgrowth.platform.privacy import mask_row
from bankgrowth.warehouse.timeutil import last_data_day, local_date

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

    from bankgrowth.config import Settings

STAGE_BY_CODE = {s.code: s for s in STAGES}


def _meta(name: str, zh: str, en: str, description: str, category: str, dtype: str) -> Tag:
    return Tag(name, zh, en, description, category, "rule", dtype, "derived", lambda c: None)  # type: ignore[arg-type]


# Tags computed by fixed steps after the declared ones; listed for the catalog.
COMPUTED_TAGS: tuple[Tag, ...] = (
    _meta(
        "stage",
        "生命周期阶段",
        "Lifecycle stage",
        "unbound, bound, transacting, super, at_risk, churned, won_back.",
        "lifecycle",
        "string",
    ),
    _meta("rfm_r", "R得分", "Recency score", "1-5; 5 = most recent.", "value", "int"),
    _meta("rfm_f", "F得分", "Frequency score", "1-5 quintile of transactions in 365 days.", "value", "int"),
    _meta("rfm_m", "M得分", "Monetary score", "1-5 quintile of amount in 365 days.", "value", "int"),
    _meta("rfc_c", "C得分", "Contribution score", "1-5 quintile of contribution in 365 days.", "value", "int"),
    _meta("rfm_score", "RFM组合", "RFM code", "R*100 + F*10 + M.", "value", "int"),
    _meta("rfm_segment", "RFM客群", "RFM segment", "Named segment from R and F.", "value", "string"),
    _meta("value_tier", "价值等级", "Value tier", "high, medium, low, none.", "value", "string"),
)
CATALOG: tuple[Tag, ...] = BUILTIN_TAGS + COMPUTED_TAGS


def catalog_tags(con: BaseBackend) -> list[Tag]:
    """Every tag a version shows: the declared and computed ones, then the imported ones."""
    return [*CATALOG, *(i.tag for i in imported.imported(con))]


@dataclass
class RunReport:
    as_of: date
    customers: int
    seconds: float
    transitions: int | None  # stage changes since the version before (``since``); None: no earlier version
    pruned: list[date]
    distribution: list[StageCount]
    mode: str = "full"  # "full" or "incremental"
    reason: str = ""  # why a full run was needed
    changed: int = 0  # customers whose stored row was (re)written
    replaced: list[date] = field(default_factory=list)  # versions from as_of on, run again
    since: date | None = None  # the version the stages were compared with: the day before, unless days were skipped
    # data of earlier days arrived after they were run: the versions from this day to the day
    # before were computed without some of it (``insight run --restate`` runs them again)
    stale_from: date | None = None
    stale: list[date] = field(default_factory=list)  # the stored versions among them


@dataclass(frozen=True)
class StageCount:
    stage: str
    zh: str
    en: str
    customers: int
    share: float


def _stable(value: object) -> str:
    """A text for ``value`` that is the same in every process: a function by its source and the
    values it closes over (``repr`` of a function holds its memory address)."""
    if isinstance(value, Agg):
        parts = [_stable(getattr(value, f.name)) for f in fields(value)]
        return f"Agg({', '.join(parts)})"
    if callable(value):
        try:
            text = inspect.getsource(value).strip()  # type: ignore[arg-type]
        except (OSError, TypeError):
            text = getattr(value, "__qualname__", type(value).__name__)
        cells = getattr(value, "__closure__", None) or ()
        return text + "".join(f"|{_stable(c.cell_contents)}" for c in cells)
    return repr(value)


def _fingerprint(settings: Settings, tags: tuple[Tag, ...]) -> str:
    """What the stored state depends on: the tag declarations, thresholds and business timezone."""
    declared = [(t.name, t.source, t.dtype, _stable(t.expr), t.fill) for t in tags]
    text = repr((declared, Thresholds.from_settings(settings), settings.timezone))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _late_data(con: BaseBackend, day: date, timezone: str) -> tuple[list[str], list[date]]:
    """The sources with rows up to the latest stored version before ``day`` that arrived after
    that version was run, and the stored versions before ``day`` computed without some of them.
    Checked whatever the mode of the run, so that a full run (asked for, or rerunning a day)
    still names the versions before it that late data left stale."""
    before = [d for d in store.versions(con) if d < day]
    logged = store.logged_run(con, before[-1]) if before else None
    if logged is None:
        return [], []
    late = _late_sources(con, before[-1], logged, timezone)
    if not late:
        return [], []
    first = _stale_from(con, before[-1], timezone)
    return late, [d for d in before if d >= first]


def _incremental_blocker(con: BaseBackend, day: date, fingerprint: str, late: list[str]) -> str:
    """Why ``day`` cannot be computed incrementally ("" if it can); ``late`` are the sources
    whose rows of earlier days arrived after the day before was run."""
    previous = day - timedelta(days=1)
    tables = con.list_tables()
    if previous not in store.versions(con):
        return f"no stored version of {previous}"
    if store.STATE not in tables:
        return "no window-count state yet"
    state_day = store.state_day(con)
    if state_day is not None and state_day >= day:  # the state is not rewound with the versions
        return f"{day} is run again, and the window-count state has moved on to {state_day}"
    if state_day != previous:
        return f"the window-count state is as of {state_day or 'an unfinished run'}, not {previous}"
    logged = store.logged_run(con, previous)
    if logged is None:
        return f"the run of {previous} left no log entry"
    if logged["fingerprint"] != fingerprint:
        return "tag definitions, thresholds or timezone changed since the last run"
    if late:
        return f"data before {day} arrived after the last run ({', '.join(late)})"
    return ""


def _late_sources(con: BaseBackend, day: date, logged: dict[str, Any], timezone: str) -> list[str]:
    """The sources whose rows up to the end of ``day`` are not those its logged run saw."""
    now = store.source_counts(con, day, timezone)
    return [k for k, v in now.items() if logged.get(k) != v]


def _stale_from(con: BaseBackend, stale: date, timezone: str) -> date:
    """The first stored version computed before some data of its days arrived, ``stale`` being
    one. Rows only arrive, so a version is stale when any earlier one is: a binary search over
    the kept versions finds the first in a few counts. A version whose run left no log entry
    counts as current."""
    kept = [d for d in store.versions(con) if d < stale]
    lo, hi = 0, len(kept)  # kept[hi:] are stale
    while lo < hi:
        mid = (lo + hi) // 2
        logged = store.logged_run(con, kept[mid])
        if logged is not None and _late_sources(con, kept[mid], logged, timezone):
            hi = mid
        else:
            lo = mid + 1
    return kept[hi] if hi < len(kept) else stale


SCRATCH = "_tags_work"  # a run's intermediate tables: this, _ and its day, then a suffix

# The steps of a nightly run, in order, for a progress display: (step, steps, what) is reported
# as each begins.
StepFn = Callable[[int, int, str], None]
FULL_STEPS = (COUNTING, "computing every tag from all history", store.STORING, "logging stage changes", "summarising")
INCREMENTAL_STEPS = (
    "moving the windows by the day's data",
    "assembling the changed customers' rows",
    store.STORING,
    "logging stage changes",
    "summarising",
)


def _run_day(con: BaseBackend, settings: Settings, as_of: date | None, beyond_data: bool) -> date:
    """The day a run is for: ``as_of``, by default the last day with transactions. A day after
    that is refused unless ``beyond_data``."""
    last = last_data_day(con, settings.timezone)
    day = as_of or last
    if day is None or last is None:
        raise LookupError("the warehouse has no transactions yet; load data first")
    if day > last and not beyond_data:
        cutoff = day - timedelta(days=settings.tag_retention_days - 1)
        lost = [kept for kept in store.versions(con) if kept < cutoff]
        raise ValueError(
            f"the last transactions are of {last}: a run for {day} would see no customer transact in the "
            f"{(day - last).days} day(s) after it"
            + (f", and would drop {len(lost)} kept version(s), {lost[0]} to {lost[-1]}" if lost else "")
            + "; load that data first, or run it anyway with --beyond-data"
        )
    return day


def run(
    con: BaseBackend,
    settings: Settings,
    *,
    as_of: date | None = None,
    full: bool = False,
    because: str = "",
    beyond_data: bool = False,
    tags: tuple[Tag, ...] = BUILTIN_TAGS,
    progress: StepFn | None = None,
) -> RunReport:
    """Compute and store the tag version (stages and value scores included) of ``as_of``.

    Incremental from the day before when it can be (see :mod:`bankgrowth.insight.incremental`);
    a full recompute when asked, or when the day before was not run, its state is missing or
    stale, the definitions changed, or older data arrived since. The report says which and why;
    ``because`` asks for a full run and is the reason given.
    ``progress`` is told as each of :data:`FULL_STEPS` or :data:`INCREMENTAL_STEPS` begins.

    A day after the last day with transactions is refused unless ``beyond_data``: its stages
    would show every customer idle since, and the versions it puts past retention would be dropped
    (a mistyped year would do both), when most likely the day's data has not been loaded yet.
    """
    started = time.perf_counter()
    day = _run_day(con, settings, as_of, beyond_data)
    th = Thresholds.from_settings(settings)
    fingerprint = _fingerprint(settings, tags)
    late, stale = _late_data(con, day, settings.timezone)
    stale_from = stale[0] if stale else None
    reason = _incremental_blocker(con, day, fingerprint, late)
    if full:
        reason = "asked for (--full)"
    if because:
        reason = because
    scratch = f"{SCRATCH}_{day:%Y%m%d}"
    for name in scratch_tables(con, SCRATCH):  # left by a run that was killed
        con.drop_table(name, force=True)
    replaced = store.rewind(con, day)
    if replaced and not reason:
        reason = f"versions from {day} on are replaced"
    plan = FULL_STEPS if reason else INCREMENTAL_STEPS

    def step(what: str) -> None:
        if progress is not None:
            progress(plan.index(what) + 1, len(plan), what)

    store.mark_state(con, None)  # the state is in flux until this run's version is written
    try:
        if reason:
            rows, _ = build_base(
                con, day, timezone=settings.timezone, thresholds=th, tags=tags, state=store.STATE, step=step
            )
        else:
            step(INCREMENTAL_STEPS[0])
            rows = build_incremental(
                con,
                day,
                store.stored_rows(con, day - timedelta(days=1)),
                state=store.STATE,
                timezone=settings.timezone,
                thresholds=th,
                tags=tags,
                scratch=scratch,
            )
        step(plan[1])
        store.stage_rows(con, rows, scratch, complete=bool(reason), tags=tags)
        step(store.STORING)
        # the version, its stage changes, the state's day and the run's log entry: all or none
        with store.transaction(con):
            customers, changed = store.write_version(
                con, day, scratch, complete=bool(reason), timezone=settings.timezone, thresholds=th, tags=tags
            )
            step("logging stage changes")
            transitions, since = store.record_transitions(con, day) or (None, None)
            step("summarising")
            # this day's stage counts, and those of versions stored before they were counted
            # (before any is pruned: the counts outlive the versions)
            counted = set(store.daily_days(con))
            store.record_daily(con, [d for d in store.versions(con) if d == day or d not in counted])
            pruned = store.prune(con, settings.tag_retention_days)
            store.mark_state(con, day)
            mode = "full" if reason else "incremental"
            seconds = time.perf_counter() - started
            counts = store.source_counts(con, day, settings.timezone)
            store.log_run(con, day, mode, reason, fingerprint, seconds, counts, stale_from, changed)
    finally:
        for name in [scratch, *scratch_tables(con, scratch)]:
            con.drop_table(name, force=True)
    return RunReport(
        day,
        customers,
        seconds,
        transitions,
        pruned,
        lifecycle_distribution(con, day),
        mode,
        reason,
        changed,
        replaced,
        since,
        stale_from,
        stale,
    )


@dataclass(frozen=True)
class Backlog:
    """The days ``insight run`` runs to reach a day: every day after the latest stored version, so
    that each is stored, counted and compared with the day before, and each moves the day
    before's state instead of recomputing all history."""

    days: list[date]  # the days to run, oldest first; the last is the day asked for
    skipped: list[date]  # days after the latest version left out: further back than versions are kept
    quiet: list[date]  # days to run, before the last, with no transaction at all (not loaded yet?)
    why_skipped: str = ""
    # stored versions run again, the first in full: data of their days arrived after they were run
    restated: list[date] = field(default_factory=list)
    up_to_date: date | None = None  # the day asked for, when its stored version is current: nothing to run

    def last_only(self) -> Backlog:
        """Only the day asked for; the days before it are left out."""
        return Backlog(
            self.days[-1:], self.skipped + self.days[:-1], [], "not caught up, as asked", up_to_date=self.up_to_date
        )


def backlog(
    con: BaseBackend,
    settings: Settings,
    *,
    as_of: date | None = None,
    beyond_data: bool = False,
    restate: bool | None = None,
    replace_later: bool = True,
    skip_current: bool = False,
) -> Backlog:
    """What :func:`catch_up` runs to reach ``as_of`` (by default the last day with transactions).

    Without ``replace_later``, an ``as_of`` before the latest stored version is refused: its run
    replaces every later version, and a catch-up brings back at most ``tag_retention_days``.

    Only the day itself when no version is stored yet or one is stored from that day on (the run
    replaces those). Days without a run are caught up only as far back as versions are kept
    (``tag_retention_days``): an earlier day's version would be dropped by the same run; the
    trend lists the days left out as gaps, and the first day run compares its stages with the
    latest version.

    With ``restate`` (by default ``settings.restate_late_data``), the stored versions computed
    before some of their days' data arrived (:func:`stale_versions`) are run again first, from
    the first of them on.

    With ``skip_current``, a day whose stored version is :func:`current` is not run again: the
    plan is empty (``up_to_date``), so a nightly job started twice, or again after it succeeded,
    costs a few counts instead of a full recompute.
    """
    later = [v for v in store.versions(con) if as_of is not None and v > as_of]
    if later and not replace_later:
        span = str(later[0]) if len(later) == 1 else f"the {len(later)} versions from {later[0]} to {later[-1]}"
        raise ValueError(
            f"{as_of} is before the latest stored version: running it replaces {span} and their stage changes, "
            f"and a catch-up brings back at most the last {settings.tag_retention_days} days. "
            f"`bankgrowth insight lifecycle --as-of {as_of}` shows its stages without storing anything; "
            "`bankgrowth insight run --restate` runs again the versions that late data made stale; "
            "--replace-later runs it anyway"
        )
    day = _run_day(con, settings, as_of, beyond_data)
    latest = store.latest(con)
    restate = settings.restate_late_data if restate is None else restate
    stale = stale_versions(con, settings) if restate and latest is not None and latest <= day else []
    if stale:
        start = stale[0]
    elif skip_current and current(con, settings, day):
        return Backlog([], [], [], up_to_date=day)
    elif latest is None or latest >= day - timedelta(days=1):
        return Backlog([day], [], [])
    else:
        start = latest + timedelta(days=1)
    missing = [start + timedelta(days=k) for k in range((day - start).days + 1)]
    keep = settings.tag_retention_days
    days, skipped = missing[-keep:], missing[:-keep]
    why = f"further back than the {keep} days versions are kept" if skipped else ""
    restated = [d for d in store.versions(con) if d in days]
    return Backlog(days, skipped, _quiet_days(con, days[:-1], settings.timezone), why, restated)


def current(con: BaseBackend, settings: Settings, day: date, tags: tuple[Tag, ...] = BUILTIN_TAGS) -> bool:
    """Whether the stored version of ``day`` is what a run of it would store now: it is the latest
    version, and since it was run no row up to the end of ``day`` arrived and neither the tag
    definitions, the thresholds nor the timezone changed."""
    return not outdated(con, settings, day, tags)


def outdated(con: BaseBackend, settings: Settings, day: date, tags: tuple[Tag, ...] = BUILTIN_TAGS) -> str:
    """Why the stored version of ``day`` is not :func:`current` ("" when it is)."""
    latest = store.latest(con)
    if latest != day:
        return f"the latest version is {latest}" if latest else "no version is stored"
    logged = store.logged_run(con, day)
    if logged is None:
        return f"the run of {day} left no log entry"
    if logged["fingerprint"] != _fingerprint(settings, tags):
        return "tag definitions, thresholds or timezone changed since it was run"
    late = _late_sources(con, day, logged, settings.timezone)
    return f"data of its day or before arrived since it was run ({', '.join(late)})" if late else ""


@dataclass(frozen=True)
class InsightStatus:
    """Where the nightly run stands, for ``bankgrowth status`` and ``GET /api/v1/insight/status``."""

    kept: list[date]  # the stored versions, oldest first
    last_data_day: date | None  # the last day with transactions
    # why the latest version is not that of the last day with data as a run would store it now
    outdated: str
    stale: list[date]  # stored versions computed before some of their data arrived
    last_run: LoggedRun | None

    @property
    def current(self) -> bool:
        return not self.outdated


def insight_status(con: BaseBackend, settings: Settings, *, scope: Scope | None = None) -> InsightStatus:
    """The stored versions, whether the latest is current, and the last run (its counts as
    :func:`run_history` gives them to ``scope``)."""
    kept = store.versions(con)
    last = last_data_day(con, settings.timezone)
    if not kept:
        why = "no version is stored"
    elif last is not None and last > kept[-1]:
        why = f"the data reaches {last}, the latest version is of {kept[-1]}"
    else:
        why = outdated(con, settings, kept[-1])
    runs = run_history(con, limit=1, scope=scope)
    return InsightStatus(kept, last, why, stale_versions(con, settings), runs[0] if runs else None)


def stale_versions(con: BaseBackend, settings: Settings) -> list[date]:
    """The stored versions computed before some of their days' data arrived, oldest first: those
    a run has marked stale, and, when rows up to the latest version's day have changed since it
    was run, every version from the first whose days' rows changed on (rows only arrive)."""
    kept = store.versions(con)
    if not kept:
        return []
    stale: set[date] = set()
    if store.RUNS in con.list_tables() and "stale_from" in con.table(store.RUNS).columns:
        runs = con.table(store.RUNS)
        logged = runs.select("as_of", "stale_from", "ran_at").order_by([ibis.desc("ran_at"), ibis.desc("as_of")])
        rows = logged.to_pyarrow().to_pylist()
        stale = {r["as_of"] for r, v in zip(rows, _versions_of(rows, set(kept)), strict=True) if v == "stale"}
    stale.update(_late_data(con, kept[-1] + timedelta(days=1), settings.timezone)[1])
    return sorted(stale)


def _quiet_days(con: BaseBackend, days: list[date], timezone: str) -> list[date]:
    """Which of ``days`` (consecutive) have no transaction: a bank's card payments stop for no
    day, so such a day most likely has not been loaded."""
    if not days:
        return []
    t = con.table("transactions")
    start = ibis.literal(end_of_day(days[0] - timedelta(days=1), timezone), type="timestamp('UTC')")
    end = ibis.literal(end_of_day(days[-1], timezone), type="timestamp('UTC')")
    seen = t.filter(t.txn_at >= start, t.txn_at < end).select(day=local_date(t.txn_at, timezone)).distinct()
    found = set(seen.day.to_pyarrow().to_pylist())
    return [d for d in days if d not in found]


def catch_up(
    con: BaseBackend,
    settings: Settings,
    plan: Backlog,
    *,
    full: bool = False,
    beyond_data: bool = False,
    tags: tuple[Tag, ...] = BUILTIN_TAGS,
    progress: StepFn | None = None,
    on_day: Callable[[int, int, date], None] | None = None,
) -> list[RunReport]:
    """Run each day of ``plan`` in turn (see :func:`backlog`); the reports, oldest first.

    Each day is incremental from the one before, except when :func:`run` finds it cannot be; with
    ``full`` the first day is recomputed from all history and the later ones move from it, which
    is identical. Restating (``plan.restated``), the first day is recomputed. ``on_day`` is told
    as each day begins (its number, how many, the day). A day that fails stops the catch-up; the
    days before it stay stored.
    """
    restating = (
        f"restating: data of {plan.restated[0]} or later arrived after those days were run" if plan.restated else ""
    )
    reports = []
    for i, day in enumerate(plan.days):
        if on_day is not None:
            on_day(i + 1, len(plan.days), day)
        first = i == 0
        reports.append(
            run(
                con,
                settings,
                as_of=day,
                full=full and first,
                because=restating if first else "",
                beyond_data=beyond_data,
                tags=tags,
                progress=progress,
            )
        )
    return reports


@dataclass(frozen=True)
class LoggedRun:
    """One nightly run as ``insight_runs`` logged it, with what became of its version."""

    as_of: date
    mode: str  # "full" or "incremental"
    reason: str  # why it was a full run ("" for an incremental one)
    seconds: float
    ran_at: datetime
    # "kept": its version is stored; "stale": stored, but data of its days arrived after it was
    # run (a later run found it); "replaced": that day, or an earlier one, was run again later
    # (a run replaces the versions from its day on); "dropped": no longer stored (past retention)
    version: str
    customers: int | None  # customers in the version; None outside HQ (a bank-wide figure)
    changed: int | None  # customers whose stored row it wrote (runs logged before it was: while kept)
    transitions: int | None  # stage changes it logged; None when replaced, or with nothing to compare
    since: date | None  # the version those changes are from


def run_history(con: BaseBackend, *, limit: int = 30, scope: Scope | None = None) -> list[LoggedRun]:
    """The latest ``limit`` nightly runs, newest first. Counts of customers are bank-wide, so a
    branch scope gets the runs without them."""
    if store.RUNS not in con.list_tables():
        return []
    runs = con.table(store.RUNS)
    if "stale_from" not in runs.columns:  # a log from before late data was traced
        runs = runs.mutate(stale_from=ibis.null("date"))
    if "written" not in runs.columns:  # a log from before the rows written were logged
        runs = runs.mutate(written=ibis.null("int64"))
    logged = (
        runs.select("as_of", "mode", "reason", "seconds", "ran_at", "customers", "stale_from", "written")
        .order_by([ibis.desc("ran_at"), ibis.desc("as_of")])
        .limit(limit)
        .to_pyarrow()
        .to_pylist()
    )
    days = sorted({r["as_of"] for r in logged})
    # when each day was first run: a run of a day no earlier day had been run before had no
    # version to compare stages with (the log holds a row a night, so this stays small)
    firsts = runs.group_by("as_of").aggregate(first=runs.ran_at.min()).to_pyarrow().to_pylist()
    kept: dict[date, int] = {}
    if store.VERSIONS in con.list_tables():
        v = con.table(store.VERSIONS)
        kept = {r["as_of"]: int(r["changed"]) for r in v.select("as_of", "changed").to_pyarrow().to_pylist()}
    changes: dict[date, tuple[int, date]] = {}
    if store.TRANSITIONS in con.list_tables():
        t = con.table(store.TRANSITIONS)
        t = t.filter(t.as_of.isin(days)) if days else t.limit(0)
        per_day = t.group_by(["as_of", "since"]).aggregate(n=t.count()).to_pyarrow().to_pylist()
        changes = {r["as_of"]: (int(r["n"]), r["since"]) for r in per_day}
    bank_wide = scope is None or scope.is_root
    out: list[LoggedRun] = []
    for r, version in zip(logged, _versions_of(logged, set(kept)), strict=True):
        day = r["as_of"]
        replaced = version == "replaced"
        compared = any(f["as_of"] < day and f["first"] < r["ran_at"] for f in firsts)
        n, since = (None, None) if replaced else changes.get(day, (0 if compared else None, None))
        out.append(
            LoggedRun(
                day,
                r["mode"],
                r["reason"],
                float(r["seconds"]),
                r["ran_at"],
                version,
                int(r["customers"]) if bank_wide else None,
                _written(r, kept, version) if bank_wide else None,
                n if bank_wide else None,
                since,
            )
        )
    return out


def _written(run: dict[str, Any], kept: dict[date, int], version: str) -> int | None:
    """The rows a run wrote, as it logged them; for a run logged before that was, its stored
    version's count while the version is kept."""
    if run["written"] is not None:
        return int(run["written"])
    return kept.get(run["as_of"]) if version in ("kept", "stale") else None


def _versions_of(logged: list[dict[str, Any]], kept: set[date]) -> list[str]:
    """What became of each logged run's version (see :class:`LoggedRun`), the runs newest first."""
    out = []
    rerun_from: date | None = None  # the earliest day run after the entry being read
    stale: list[tuple[date, date]] = []  # (first, last) days later runs found computed without late data
    for r in logged:
        day = r["as_of"]
        replaced = rerun_from is not None and rerun_from <= day
        rerun_from = day if rerun_from is None else min(rerun_from, day)
        version = "replaced" if replaced else "kept" if day in kept else "dropped"
        if version == "kept" and any(first <= day <= last for first, last in stale):
            version = "stale"
        if r["stale_from"] is not None:
            stale.append((r["stale_from"], day - timedelta(days=1)))
        out.append(version)
    return out


def scoped(t: ibis.Table, scope: Scope | None) -> ibis.Table:
    """Only the rows of a version (``t`` has its ``branch_id``) of customers owned by an org in
    ``scope`` on that day (everything at HQ) — as audiences select them."""
    if scope is None or scope.org_ids is None:
        return t
    return t.filter(t.branch_id.isin(sorted(scope.org_ids)))


def computed_stages(con: BaseBackend, settings: Settings, day: date, *keep: str) -> ibis.Table:
    """(customer_id, the tags ``keep``, stage) as of the end of ``day``, computed from all history
    with the current thresholds, as a full run would compute them — and nothing is stored: for a
    day without a stored version, which a run of it would replace every later version to make.
    A day after the last day with transactions is refused, since every customer would look idle."""
    last = last_data_day(con, settings.timezone)
    if last is None:
        raise LookupError("the warehouse has no transactions yet; load data first")
    if day > last:
        raise Invalid(
            f"the last transactions are of {last}: stages of {day} cannot be computed before its data",
            f"最近的交易在 {last}：{day} 的数据尚未到达，无法计算其生命周期阶段",
            code="day_after_data",
            details={"day": str(day), "last_data_day": str(last)},
        )
    tags = [t for t in BUILTIN_TAGS if t.name in STAGE_INPUTS or t.name in keep]
    wide = build_tags(con, day, timezone=settings.timezone, thresholds=Thresholds.from_settings(settings), tags=tags)
    return wide.select("customer_id", *keep, "stage")


def computed_days(con: BaseBackend, end: date | None, start: date | None = None, *, counts: bool = True) -> list[date]:
    """Of the days :func:`lifecycle_distribution` (``end``), :func:`grid` (``end``, ``counts=False``)
    and :func:`transition_matrix` (``start`` and ``end``, when ``start`` is given) read, those whose
    stages they compute from the data given the settings: no stored version, and for the
    distribution alone (``counts``) no stored counts either."""
    kept = set(store.versions(con))
    days = [d for d in (start, end) if start is not None and d is not None and d not in kept]
    if end is not None and end not in kept and end not in days and not (counts and end in store.daily_days(con)):
        days.append(end)
    return days


def _stages(con: BaseBackend, day: date, settings: Settings | None, *keep: str) -> ibis.Table:
    """``day``'s stages from its stored version; given ``settings``, computed for a day without one."""
    if settings is not None and day not in store.versions(con):
        return computed_stages(con, settings, day, *keep)
    return store.stages(con, day, *keep)


def lifecycle_distribution(
    con: BaseBackend, as_of: date | None = None, *, scope: Scope | None = None, settings: Settings | None = None
) -> list[StageCount]:
    """Customers by stage on ``as_of`` (default: the latest version), counted by the branch each
    belonged to that day. Read from the stored counts, so a day whose version is past retention
    is still shown; a kept version without them (stored before they were kept) is counted. Given
    ``settings``, a day never run is computed from the data (:func:`computed_stages`), by the
    customers' present branch."""
    day = as_of or store.latest(con)
    if day is None:
        raise LookupError("no tag version yet; run `bankgrowth insight run`")
    counted = day in store.daily_days(con)
    if settings is not None and not counted and day not in store.versions(con):
        counts = dict(_pairs(scoped(computed_stages(con, settings, day, "branch_id"), scope), "stage"))
    elif counted:
        daily = scoped(con.table(store.DAILY), scope)
        daily = daily.filter(daily.as_of == day)
        counts = {
            r["stage"]: int(r["n"])
            for r in daily.group_by("stage").aggregate(n=daily.customers.sum()).to_pyarrow().to_pylist()
        }
    else:
        counts = dict(_pairs(scoped(store.stages(con, day, "branch_id"), scope), "stage"))
    total = sum(counts.values()) or 1
    return [StageCount(s.code, s.zh, s.en, counts.get(s.code, 0), counts.get(s.code, 0) / total) for s in STAGES]


@dataclass(frozen=True)
class Trend:
    """Customers by stage on each day with stored counts, oldest first."""

    days: list[date]
    counts: dict[str, list[int]]  # stage code → customers on each of ``days``
    gaps: list[date]  # days in the span without counts (not run, or replaced and not run again)

    def last_day(self) -> list[StageCount]:
        """The distribution on the last day (all zero when the span has no day)."""
        last = {stage: values[-1] if values else 0 for stage, values in self.counts.items()}
        total = sum(last.values()) or 1
        return [StageCount(s.code, s.zh, s.en, last[s.code], last[s.code] / total) for s in STAGES]


def lifecycle_trend(con: BaseBackend, *, end: date | None = None, days: int = 30, scope: Scope | None = None) -> Trend:
    """The lifecycle distribution over the ``days`` days up to ``end`` (default: the latest day
    counted), each customer counted by the branch it belonged to that day. The counts are kept
    after their versions are dropped, so the trend reaches back to the first day run."""
    counted = store.daily_days(con)
    last = end or (counted[-1] if counted else None)
    if last is None:
        raise LookupError("no lifecycle counts yet; run `bankgrowth insight run`")
    first = last - timedelta(days=days - 1)
    daily = scoped(con.table(store.DAILY), scope)
    daily = daily.filter((daily.as_of >= first) & (daily.as_of <= last))
    rows = daily.group_by(["as_of", "stage"]).aggregate(n=daily.customers.sum()).to_pyarrow().to_pylist()
    found = sorted(d for d in counted if first <= d <= last)
    by = {(r["as_of"], r["stage"]): int(r["n"]) for r in rows}
    counts = {s.code: [by.get((d, s.code), 0) for d in found] for s in STAGES}
    # days not counted, after the first day ever counted (before it there is nothing to miss)
    span = [first + timedelta(days=k) for k in range(days)]
    have = set(found)
    gaps = [d for d in span if d > counted[0] and d not in have] if counted else []
    return Trend(found, counts, gaps)


def _pairs(t: ibis.Table, column: str) -> list[tuple[Any, int]]:
    rows = t.group_by(column).aggregate(_n=t.count()).to_pyarrow().to_pylist()
    return [(r[column], int(r["_n"])) for r in rows]


@dataclass(frozen=True)
class Matrix:
    """Counts of customers by row label × column label."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    counts: dict[tuple[str, str], int]

    def total(self) -> int:
        return sum(self.counts.values())


def transition_matrix(
    con: BaseBackend, start: date, end: date, *, scope: Scope | None = None, settings: Settings | None = None
) -> Matrix:
    """Stage on ``start`` (rows) × stage on ``end`` (columns), from their stored versions; given
    ``settings``, a day without one is computed from the data (:func:`computed_stages`)."""
    a = _stages(con, start, settings).select(_cid="customer_id", _from="stage")
    b = scoped(_stages(con, end, settings, "branch_id"), scope).select("customer_id", _to="stage")
    j = b.left_join(a, b.customer_id == a._cid)
    j = j.mutate(_from=j._from.fill_null("new"))
    rows = j.group_by(["_from", "_to"]).aggregate(n=j.count()).to_pyarrow().to_pylist()
    counts = {(r["_from"], r["_to"]): int(r["n"]) for r in rows}
    row_labels = tuple(s for s in ("new", *STAGE_CODES) if any(k[0] == s for k in counts)) or STAGE_CODES
    return Matrix(row_labels, STAGE_CODES, counts)


def grid(
    con: BaseBackend, as_of: date | None = None, *, scope: Scope | None = None, settings: Settings | None = None
) -> Matrix:
    """The customer grid (宫格): lifecycle stage × value tier, from the stored version; given
    ``settings``, a day without one is computed from the data (:func:`computed_stages`), by the
    customers' present branch."""
    if settings is not None and as_of is not None and as_of not in store.versions(con):
        t = scoped(computed_stages(con, settings, as_of, "branch_id", "value_tier"), scope)
    else:
        t = scoped(store.tags_table(con, as_of), scope)
    rows = t.group_by(["stage", "value_tier"]).aggregate(n=t.count()).to_pyarrow().to_pylist()
    return Matrix(STAGE_CODES, VALUE_TIERS, {(r["stage"], r["value_tier"]): int(r["n"]) for r in rows})


@dataclass
class TagStats:
    tag: Tag
    rows: int
    coverage: float  # share of customers with a value
    nonzero: float | None = None  # numeric and boolean tags: share with a non-zero / true value
    summary: dict[str, Any] = field(default_factory=dict)  # min, median, max, mean — numeric tags
    top: list[tuple[Any, int]] = field(default_factory=list)  # most common values — categorical tags
    histogram: list[Bin] = field(default_factory=list)  # numeric tags, when one tag is asked for


@dataclass(frozen=True)
class Bin:
    """Customers whose value is at least ``low`` and below ``high`` (see :func:`histogram_edges`)."""

    low: float
    high: float
    customers: int


def _nice(x: float) -> float:
    """The smallest of 1, 2, 5 × 10^k at or above ``x`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(x))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= x * (1 - 1e-12))


def histogram_edges(
    lo: float, hi: float, median: float, *, integer: bool, first: float = 1.0, most: int = 12
) -> list[float]:
    """Ascending bin edges for values from ``lo`` to ``hi``, at most ``most`` bins; a value is in
    the bin from edge ``i`` (included) to ``i + 1`` (excluded), except that the last bin of
    non-whole values also holds ``hi`` itself.

    Non-negative values with a long tail (the largest more than 20 times the median, and above
    20 × ``first``: counts, amounts, days since) get 1-2-5 steps from ``first`` (100 for fen: ¥1)
    — decades when those would be too many — after a bin of zero, so the many customers near zero
    and the few very large ones both stay readable. Other values get equal bins of a round width."""
    if lo >= 0 and hi > 20 * max(median, first):
        steps = [first * m * 10.0**k for k in range(40) for m in (1, 2, 5)]
        upto = [e for e in steps if e <= hi]
        tail = [*upto, steps[len(upto)]]  # the first step above hi closes the last bin
        if len(tail) >= most - 1:
            decades = [first * 10.0**k for k in range(40)]
            upto = [e for e in decades if e <= hi]
            tail = [*upto, decades[len(upto)]][-(most - 2) :]
        zero = [1.0] if integer and lo == 0 and tail[0] > 1 else []  # zero apart from small values
        return [lo, *[e for e in zero + tail if e > lo]]
    tenth = (hi - lo) / 10
    width = _nice(tenth) if tenth > 0 else 1.0  # zero also when the span is a subnormal float
    if integer:
        width = max(width, 1.0)
    start = math.floor(lo / width) * width
    if start > lo:  # lo / width rounded to zero (a tiny negative lo)
        start -= width
    edges = [start]
    for k in range(1, most + 2):
        edge = round(start + k * width, 12)
        if edge <= edges[-1]:  # a width below the values' float precision
            break
        edges.append(edge)
        if edge > hi or (not integer and edge >= hi):
            return edges
    return [lo, math.nextafter(hi, math.inf)]  # one bin


def catalog(
    con: BaseBackend, as_of: date | None = None, *, names: list[str] | None = None, scope: Scope | None = None
) -> list[TagStats]:
    """Coverage and distribution of every tag (or of ``names``) in a stored version."""
    t = scoped(store.tags_table(con, as_of), scope)
    every = catalog_tags(con)
    wanted = [tag for tag in every if names is None or tag.name in names]
    unknown = sorted(set(names or []) - {tag.name for tag in wanted})
    if unknown:
        listed = ", ".join(unknown)
        known = [tag.name for tag in every]
        near = [f"{name} → {hint}" for name in unknown if (hint := closest(name, known))]
        en_hint = f" (did you mean {', '.join(near)}?)" if near else ""
        zh_hint = f"（是否为 {'，'.join(near)}？）" if near else ""
        raise NotFound(
            f"unknown tag(s): {listed}{en_hint}; see `bankgrowth tags list`",
            f"没有标签：{listed}{zh_hint}；可用 `bankgrowth tags list` 查看",
            code="unknown_tag",
        )
    aggs: dict[str, Any] = {"_rows": t.count()}
    for tag in wanted:
        col = t[tag.name]
        aggs[f"{tag.name}__n"] = col.count()
        if tag.dtype in ("int", "float"):
            aggs[f"{tag.name}__nz"] = (col != 0).sum()
            aggs[f"{tag.name}__min"] = col.min()
            aggs[f"{tag.name}__max"] = col.max()
            aggs[f"{tag.name}__mean"] = col.mean()
            aggs[f"{tag.name}__median"] = col.approx_median()
        elif tag.dtype == "bool":
            aggs[f"{tag.name}__nz"] = col.cast("int64").sum()
        elif tag.dtype == "timestamp":
            aggs[f"{tag.name}__min"] = col.min()
            aggs[f"{tag.name}__max"] = col.max()
    row = t.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    total = int(row["_rows"]) or 1
    out = []
    for tag in wanted:
        stats = TagStats(tag, int(row["_rows"]), int(row[f"{tag.name}__n"]) / total)
        if f"{tag.name}__nz" in row:
            stats.nonzero = int(row[f"{tag.name}__nz"] or 0) / total
        for key in ("min", "median", "max", "mean"):
            if f"{tag.name}__{key}" in row:
                stats.summary[key] = row[f"{tag.name}__{key}"]
        if tag.dtype in ("string", "bool") and names is not None:
            stats.top = sorted(_pairs(t, tag.name), key=lambda kv: -kv[1])[:10]
        if tag.dtype in ("int", "float") and names is not None and stats.summary.get("min") is not None:
            stats.histogram = _histogram(t, tag, stats.summary)
        out.append(stats)
    return out


def _histogram(t: ibis.Table, tag: Tag, summary: dict[str, Any]) -> list[Bin]:
    """Customers per bin of :func:`histogram_edges` (empty bins included), in one pass."""
    lo, hi, median = (float(summary[k]) for k in ("min", "max", "median"))
    first = 100.0 if tag.unit == "fen" else 1.0
    edges = histogram_edges(lo, hi, median, integer=tag.dtype == "int", first=first)
    col = t[tag.name]
    which = ibis.cases(*[(col >= e, i) for i, e in reversed(list(enumerate(edges[:-1])))], else_=None)
    t = t.select(_bin=which)
    t = t.filter(t._bin.notnull())
    counts = dict(_pairs(t, "_bin"))
    return [Bin(edges[i], edges[i + 1], counts.get(i, 0)) for i in range(len(edges) - 1)]


def customer_or_raise(con: BaseBackend, customer_id: int, *, scope: Scope | None = None) -> dict[str, Any]:
    """The customer's row (in clear); not found when absent or owned outside ``scope``."""
    customers = con.table("customers")
    found = customers.filter(customers.customer_id == customer_id).to_pyarrow().to_pylist()
    if not found or (scope is not None and not scope.allows(found[0]["branch_id"])):
        raise NotFound(f"no customer {customer_id}", f"没有客户 {customer_id}", details={"customer_id": customer_id})
    return found[0]


@dataclass
class CustomerView:
    customer_id: int
    profile: dict[str, Any]
    tags: dict[str, Any]
    tags_as_of: date | None
    stage_history: list[dict[str, Any]]
    bindings: list[dict[str, Any]]
    recent_transactions: list[dict[str, Any]]
    timezone: ZoneInfo
    declarations: dict[str, Tag] = field(default_factory=dict)  # each shown tag's labels, type and unit
    history_since: date | None = None  # the first day run: stage changes are logged from the next one


def customer_view(
    con: BaseBackend,
    customer_id: int,
    *,
    timezone: str = "Asia/Shanghai",
    reveal: bool = False,
    recent: int = 20,
    scope: Scope | None = None,
) -> CustomerView:
    """One customer's 360 view; personal data masked unless ``reveal``. A customer outside
    ``scope`` is not found. Whether the caller may reveal (and the audit of it) is the caller's:
    see ``platform.flows.customer_view``."""
    found = customer_or_raise(con, customer_id, scope=scope)
    profile = found if reveal else mask_row(found)
    day = store.latest(con)
    tags: dict[str, Any] = {}
    if day is not None:
        t = store.tags_table(con, day)
        rows = t.filter(t.customer_id == customer_id).to_pyarrow().to_pylist()
        tags = {k: v for k, v in rows[0].items() if k != "customer_id"} if rows else {}
    history: list[dict[str, Any]] = []
    if store.TRANSITIONS in con.list_tables():
        log = con.table(store.TRANSITIONS)
        history = (
            log.filter(log.customer_id == customer_id).order_by("as_of").drop("customer_id").to_pyarrow().to_pylist()
        )
    since = None
    if store.DAILY in con.list_tables():  # kept for good, as the log is
        since = con.table(store.DAILY).as_of.min().to_pyarrow().as_py()
    b = con.table("quickpay_bindings")
    bindings = b.filter(b.customer_id == customer_id).order_by("bound_at").drop("customer_id").to_pyarrow().to_pylist()
    tx = con.table("transactions")
    recent_rows = (
        tx.filter(tx.customer_id == customer_id)
        .order_by(ibis.desc("txn_at"))
        .limit(recent)
        .drop("customer_id")
        .to_pyarrow()
        .to_pylist()
    )
    for r in recent_rows:
        r["amount_yuan"] = Decimal(r.pop("amount_fen")) / 100
    declared = {tag.name: tag for tag in catalog_tags(con) if tag.name in tags}
    return CustomerView(
        customer_id, profile, tags, day, history, bindings, recent_rows, ZoneInfo(timezone), declared, since
    )


CHANNEL_FIELDS = ("stage", "value_tier", "rfm_segment", "preferred_institution")


def channel_profile(con: BaseBackend, customer_id: int, *, scope: Scope | None = None) -> dict[str, Any]:
    """What a channel application may know to personalise a page: stage and value, no personal data."""
    customer_or_raise(con, customer_id, scope=scope)
    day = store.latest(con)
    row: dict[str, Any] = {}
    if day is not None:
        t = store.tags_table(con, day)
        rows = t.filter(t.customer_id == customer_id).select(*CHANNEL_FIELDS).to_pyarrow().to_pylist()
        row = rows[0] if rows else {}
    return {"customer_id": customer_id, "as_of": day, **{k: row.get(k) for k in CHANNEL_FIELDS}}
