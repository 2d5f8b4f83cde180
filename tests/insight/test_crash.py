"""A nightly run killed at any step loses nothing.

The run is killed (SIGKILL: no cleanup, no rollback in Python) as each step of an incremental run
begins, and as a full run starts storing and logging (a full run's rows pass through a table that
outlives the process). Nothing of the killed day may be half-stored: its version, its stage changes and the mark
that lets the next run be incremental are written together or not at all. Then both things an
operator or a scheduler may do next must give the right result:

- carry on with the next day: its version is exactly that of uninterrupted runs, and no stage
  change is lost — each customer's logged changes lead from their stage in the last version before
  the crash to their stage now;
- run the killed day again, then the next: every version, the window-count state and the
  transition log are exactly those of uninterrupted runs.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bankgrowth.config import Settings
from bankgrowth.insight import service, store
from bankgrowth.warehouse import engine

DAYS = (date(2026, 10, 27), date(2026, 10, 28), date(2026, 10, 29))  # full, then incremental


def _connect(path: Path) -> Any:
    return engine.connect(f"duckdb:///{path}")


def _run(path: Path, day: date) -> service.RunReport:
    con = _connect(path)
    try:
        return service.run(con, Settings(data_dir=path.parent), as_of=day)
    finally:
        con.disconnect()


def _killed_at(path: Path, day: date, step: int, *, full: bool) -> None:
    """Run ``day`` in another process that kills itself as step ``step`` of the run begins."""
    code = textwrap.dedent(
        f"""
        import os, signal
        from datetime import date
        from pathlib import Path
        from bankgrowth.config import Settings
        from bankgrowth.insight import service
        from bankgrowth.warehouse import engine

        def progress(i, n, what):
            if i == {step}:
                os.kill(os.getpid(), signal.SIGKILL)

        con = engine.connect("duckdb:///{path}")
        service.run(con, Settings(data_dir=Path("{path.parent}")), as_of=date.fromisoformat("{day}"), full={full}, progress=progress)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr


def _snapshot(path: Path) -> dict[str, Any]:
    con = _connect(path)
    try:
        days = store.versions(con)
        out: dict[str, Any] = {"versions": days}
        for day in days:
            out[str(day)] = store.tags_table(con, day).order_by("customer_id").to_pyarrow()
        state = con.table(store.STATE)
        out["state"] = state.order_by(["tag", "customer_id", "key"]).to_pyarrow()
        out["state_day"] = store.state_day(con)
        log = con.table(store.TRANSITIONS)
        out["transitions"] = log.order_by(["as_of", "customer_id"]).to_pyarrow()
        return out
    finally:
        con.disconnect()


def _stages(path: Path, day: date) -> dict[int, str]:
    con = _connect(path)
    try:
        rows = store.stages(con, day).to_pyarrow().to_pylist()
        return {r["customer_id"]: r["stage"] for r in rows}
    finally:
        con.disconnect()


@pytest.fixture(scope="module")
def first_day(loaded_bank: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("crash-first") / "warehouse.duckdb"
    shutil.copy(loaded_bank, path)
    _run(path, DAYS[0])
    return path


@pytest.fixture(scope="module")
def uninterrupted(first_day: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("crash-reference") / "warehouse.duckdb"
    shutil.copy(first_day, path)
    for day in DAYS[1:]:
        assert _run(path, day).mode == "incremental"
    return _snapshot(path)


@pytest.mark.parametrize(
    ("mode", "step"),
    [("incremental", k) for k in range(1, len(service.INCREMENTAL_STEPS) + 1)] + [("full", 3), ("full", 4)],
)
def test_a_run_killed_at_any_step_loses_nothing(
    mode: str, step: int, first_day: Path, uninterrupted: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(first_day, path)
    before = _stages(path, DAYS[0])
    _killed_at(path, DAYS[1], step, full=mode == "full")

    # nothing of the killed day is stored
    con = _connect(path)
    try:
        assert store.versions(con) == [DAYS[0]]
        log = con.table(store.TRANSITIONS)
        assert log.filter(log.as_of >= DAYS[1]).count().to_pyarrow().as_py() == 0
        assert store.logged_run(con, DAYS[1]) is None
        # a full run's rows wait in a table that outlives the process (an incremental run's in a
        # temporary one)
        left = [t for t in con.list_tables() if t.startswith(service.SCRATCH)]
        assert bool(left) == (mode == "full"), left
    finally:
        con.disconnect()

    # the next night: the right version, and every stage change since the last version logged
    report = _run(path, DAYS[2])
    assert report.mode == "full" and f"no stored version of {DAYS[1]}" in report.reason
    assert report.since == DAYS[0]
    after = _snapshot(path)
    assert after[str(DAYS[2])].equals(uninterrupted[str(DAYS[2])])
    now = _stages(path, DAYS[2])
    moves = after["transitions"].to_pylist()
    assert moves and {m["since"] for m in moves} == {DAYS[0]}
    assert len(moves) == report.transitions
    walked = dict(before)
    for m in moves:
        assert walked.get(m["customer_id"], "new") == m["from_stage"], m
        walked[m["customer_id"]] = m["to_stage"]
    assert walked == now
    con = _connect(path)
    try:
        assert not [t for t in con.list_tables() if t.startswith(service.SCRATCH)]  # a killed run's, dropped
    finally:
        con.disconnect()

    # or the killed day again, then the next: exactly the uninterrupted result
    assert _run(path, DAYS[1]).mode == "full"  # the state was left unusable: recomputed
    assert _run(path, DAYS[2]).mode == "incremental"
    again = _snapshot(path)
    assert again.keys() == uninterrupted.keys()
    for key, expected in uninterrupted.items():
        assert again[key] == expected if not hasattr(expected, "equals") else again[key].equals(expected), key


def test_a_run_failing_while_it_stores_leaves_nothing_and_the_next_runs_are_right(
    first_day: Path, uninterrupted: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(first_day, path)

    def failing(con: Any, as_of: date) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "record_transitions", failing)  # after the version is written, before commit
    with pytest.raises(RuntimeError, match="disk full"):
        _run(path, DAYS[1])
    monkeypatch.undo()
    con = _connect(path)
    try:
        assert store.versions(con) == [DAYS[0]]
        assert store.logged_run(con, DAYS[1]) is None
        assert store.state_day(con) is None  # the state was moved: not trusted
    finally:
        con.disconnect()
    assert _run(path, DAYS[1]).mode == "full"
    assert _run(path, DAYS[2]).mode == "incremental"
    again = _snapshot(path)
    for key, expected in uninterrupted.items():
        assert again[key] == expected if not hasattr(expected, "equals") else again[key].equals(expected), key
