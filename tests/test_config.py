from __future__ import annotations

import re
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


def test_the_example_env_file_lists_every_setting_at_its_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given: .env.example copied to .env, as its first line says, and no setting in the environment
    example = Path(__file__).parents[1] / ".env.example"
    (tmp_path / ".env").write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for key in Settings.model_fields:
        monkeypatch.delenv(f"BANKGROWTH_{key.upper()}", raising=False)
    # when
    from_file = Settings()
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    # then: the same settings (an empty value is the default), and every setting is in the file
    assert from_file == defaults
    listed = set(re.findall(r"^#? ?BANKGROWTH_([A-Z_]+)=", example.read_text(encoding="utf-8"), re.MULTILINE))
    assert listed == {key.upper() for key in Settings.model_fields}
