from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bankgrowth.config import Settings


def test_defaults_put_everything_in_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for key in ("DATA_DIR", "WAREHOUSE_URL", "OPERATIONAL_URL", "TIMEZONE"):
        monkeypatch.delenv(f"BANKGROWTH_{key}", raising=False)
    s = Settings()
    assert s.timezone == "Asia/Shanghai"
    assert s.resolved_warehouse_url == f"duckdb:///{tmp_path / 'data' / 'warehouse.duckdb'}"
    assert s.resolved_operational_url == f"sqlite:///{tmp_path / 'data' / 'operational.sqlite'}"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANKGROWTH_WAREHOUSE_URL", "pyspark://local[2]")
    monkeypatch.setenv("BANKGROWTH_TIMEZONE", "Asia/Hong_Kong")
    s = Settings()
    assert s.resolved_warehouse_url == "pyspark://local[2]"
    assert s.tz.key == "Asia/Hong_Kong"


@pytest.mark.parametrize("zone", ["Nowhere/City", "America/New_York"])
def test_unusable_timezones_are_refused(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    monkeypatch.setenv("BANKGROWTH_TIMEZONE", zone)
    with pytest.raises(ValidationError):
        Settings()
