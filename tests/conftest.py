from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bankgrowth.warehouse import engine, ingest
from bankgrowth.warehouse.simulator import SimulationConfig, SimulationResult, simulate

SMALL_BANK = SimulationConfig(customers=3_000, seed=11, chunk_customers=1_000)


@contextmanager
def warehouse_copy(source: Path, folder: Path) -> Iterator[tuple[Any, Any]]:
    """A copy of the warehouse file ``source`` in ``folder``, connected, with settings whose data
    directory is ``folder``; disconnected afterwards."""
    from bankgrowth.config import Settings

    path = folder / "w.duckdb"
    shutil.copy(source, path)
    con = engine.connect(f"duckdb:///{path}")
    try:
        yield con, Settings(data_dir=folder)
    finally:
        con.disconnect()


HOLD = "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('holding', flush=True); time.sleep(30)"


@contextmanager
def held(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process with ``path`` open, as a nightly run or a load has it, until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="session")
def small_bank(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """A 3,000-customer simulated bank, written once per test session."""
    return simulate(SMALL_BANK, tmp_path_factory.mktemp("bank"))


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[object]:
    """An empty DuckDB warehouse file."""
    con = engine.connect(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    yield con
    con.disconnect()


@pytest.fixture(scope="session")
def loaded_bank(small_bank: SimulationResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB warehouse file holding the small bank; tests open it read-only in spirit."""
    path = tmp_path_factory.mktemp("loaded") / "warehouse.duckdb"
    con = engine.connect(f"duckdb:///{path}")
    for f in ingest.expand_paths([small_bank.bank_dir]):
        ingest.load_file(con, f)
    con.disconnect()
    return path


@pytest.fixture(scope="session")
def spark_session():  # type: ignore[no-untyped-def]
    pyspark_sql = pytest.importorskip("pyspark.sql")
    session = (
        pyspark_sql.SparkSession.builder.master("local[2]")
        .appName("bankgrowth-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def insight_bank(loaded_bank: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small bank with one tag version (2026-10-31), as a DuckDB file of its own."""
    import shutil
    from datetime import date

    from bankgrowth.config import Settings
    from bankgrowth.insight import service

    path = tmp_path_factory.mktemp("insight-bank") / "warehouse.duckdb"
    shutil.copy(loaded_bank, path)
    con = engine.connect(f"duckdb:///{path}")
    service.run(con, Settings(data_dir=path.parent), as_of=date(2026, 10, 31))
    con.disconnect()
    return path
