"""One typed settings object, read from ``BANKGROWTH_*`` environment variables and ``.env``.

Validated once at start-up; every front end (CLI, API) and every service receives it explicitly.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET = "development-only-secret-do-not-use-in-production"


def fixed_offset(timezone: str) -> timedelta:
    """The zone's constant UTC offset; ValueError if the zone has changed offset since 2000."""
    zone = ZoneInfo(timezone)
    offsets = {
        datetime(year, month, 15, tzinfo=UTC).astimezone(zone).utcoffset()
        for year in range(2000, 2040)
        for month in (1, 7)
    }
    if len(offsets) != 1:
        raise ValueError(
            f"timezone {timezone!r} changes its UTC offset (daylight saving); bankgrowth needs a "
            "fixed-offset business timezone such as Asia/Shanghai"
        )
    offset = offsets.pop()
    assert offset is not None
    return offset


class Settings(BaseSettings):
    """Runtime configuration.

    ``warehouse_url`` and ``operational_url`` default to files inside ``data_dir`` so that a fresh
    checkout runs with no configuration at all.
    """

    model_config = SettingsConfigDict(
        env_prefix="BANKGROWTH_", env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
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
    warehouse_wait_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How long a command waits for the DuckDB warehouse while another process holds it "
        "(a nightly run, a load); the API waits at most 2 s, then answers 503 with Retry-After.",
    )
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone for business dates.")
    # lifecycle thresholds (docs/insight.md explains each stage)
    at_risk_days: int = Field(default=30, ge=1, description="No transaction for this many days: at risk.")
    churn_days: int = Field(default=90, ge=2, description="No transaction for this many days: churned.")
    super_user_txns: int = Field(default=20, ge=1, description="More transactions than this in 365 days: super user.")
    winback_days: int = Field(default=30, ge=1, description="A return from churn within this many days: won back.")
    tag_retention_days: int = Field(default=35, ge=1, description="Daily tag versions kept.")
    restate_late_data: bool = Field(
        default=False,
        description="insight run first runs again the stored versions computed before some of their data arrived.",
    )
    # platform
    mode: Literal["development", "production"] = Field(
        default="development", description="production refuses default or short secrets."
    )
    secret_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SECRET),
        description="Signs pseudonyms in exports (and later callbacks). At least 32 characters in production.",
    )
    session_ttl_minutes: int = Field(default=480, ge=5, description="Console sessions expire after this.")
    key_grace_hours: int = Field(default=24, ge=0, description="A rotated API key keeps working this long.")
    max_failed_logins: int = Field(default=5, ge=1, description="Failed logins in a row before a lockout.")
    lockout_minutes: int = Field(default=15, ge=1, description="How long a locked account stays locked.")
    # reach: contact rules for every campaign's messages
    contact_caps: dict[str, dict[Literal["day", "week", "month"], int]] = Field(
        default={
            "*": {"day": 2, "week": 5, "month": 12},
            "sms": {"day": 1, "week": 3, "month": 8},
            "outbound_call": {"week": 1, "month": 2},
        },
        description=(
            "Messages per customer in rolling windows (day = 24 h, week = 7 days, month = 30 days), per "
            "channel and across all ('*'); JSON in the environment."
        ),
    )
    quiet_hours: str = Field(
        default="21:00-08:00", description="No message is sent in this local period; equal ends turn it off."
    )
    channels: dict[str, str] = Field(
        default={},
        description=(
            "Where each channel's messages go: an http(s):// endpoint (signed POST), file:DIR for the "
            "outbound-call list, or simulated; JSON in the environment, e.g. "
            '{"sms": "https://sms.example.bank/send"}. A channel left out is simulated in development '
            "and refused in production."
        ),
    )
    connector_secret: SecretStr | None = Field(
        default=None,
        description="Signs batches to channel endpoints and verifies their receipts (default: secret_key).",
    )
    api_host: str = Field(default="127.0.0.1", description="Address `bankgrowth serve` listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port `bankgrowth serve` listens on.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        fixed_offset(value)
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        parts = value.split("-")
        try:
            if len(parts) != 2:
                raise ValueError
            for p in parts:
                time.fromisoformat(p.strip())
        except ValueError:
            raise ValueError(f"quiet_hours must look like 21:00-08:00; found {value!r}") from None
        return value

    @field_validator("contact_caps")
    @classmethod
    def _positive_caps(cls, value: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        for channel, windows in value.items():
            for window, limit in windows.items():
                if limit < 1:
                    raise ValueError(f"contact_caps[{channel}][{window}] must be at least 1; found {limit}")
        return value

    @field_validator("warehouse_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("duckdb://", "pyspark://")):
            raise ValueError(f"warehouse_url must start with duckdb:// or pyspark://, found {value!r}")
        return value

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> Settings:
        if not self.at_risk_days < self.churn_days:
            raise ValueError("at_risk_days must be smaller than churn_days")
        if not self.winback_days <= self.churn_days:
            raise ValueError("winback_days must not exceed churn_days")
        if self.mode != "development":
            secret = self.secret_key.get_secret_value()
            if secret == DEVELOPMENT_SECRET or len(secret) < 32:
                raise ValueError(
                    f"mode={self.mode} refuses the default or a short secret: set BANKGROWTH_SECRET_KEY "
                    "to at least 32 random characters, e.g. from `openssl rand -base64 48`"
                )
        return self

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def resolved_warehouse_url(self) -> str:
        return self.warehouse_url or f"duckdb:///{(self.data_dir / 'warehouse.duckdb').resolve()}"

    @property
    def resolved_connector_secret(self) -> bytes:
        return (self.connector_secret or self.secret_key).get_secret_value().encode()

    @property
    def resolved_operational_url(self) -> str:
        return self.operational_url or f"sqlite:///{(self.data_dir / 'operational.sqlite').resolve()}"
