"""One typed settings object, read from ``BANKGROWTH_*`` environment variables and ``.env``.

Validated once at start-up; every front end (CLI, API) and every service receives it explicitly.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bankgrowth.warehouse.timeutil import fixed_offset


class Settings(BaseSettings):
    """Runtime configuration.

    ``warehouse_url`` and ``operational_url`` default to files inside ``data_dir`` so that a fresh
    checkout runs with no configuration at all.
    """

    model_config = SettingsConfigDict(
        env_prefix="BANKGROWTH_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(default=Path("data"), description="Where default files are kept.")
    warehouse_url: str | None = Field(
        default=None,
        description=(
            "Analytical store. duckdb:///path/to/file.duckdb (default: data_dir/warehouse.duckdb), "
            "duckdb://:memory:, pyspark://local[2] or pyspark://spark://host:7077."
        ),
    )
    operational_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the operational store (default: SQLite in data_dir).",
    )
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone for business dates.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        fixed_offset(value)
        return value

    @field_validator("warehouse_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("duckdb://", "pyspark://")):
            raise ValueError(f"warehouse_url must start with duckdb:// or pyspark://, found {value!r}")
        return value

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def resolved_warehouse_url(self) -> str:
        return self.warehouse_url or f"duckdb:///{(self.data_dir / 'warehouse.duckdb').resolve()}"

    @property
    def resolved_operational_url(self) -> str:
        return self.operational_url or f"sqlite:///{(self.data_dir / 'operational.sqlite').resolve()}"
