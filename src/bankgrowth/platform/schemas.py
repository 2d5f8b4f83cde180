"""Request and response shapes of the platform (``XCreate`` / ``XUpdate`` / ``XRead``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bankgrowth.platform.access import Role
from bankgrowth.platform.security import MIN_PASSWORD_LENGTH

USERNAME = r"^[a-z][a-z0-9_.-]{2,63}$"
ORG_ID = r"^[A-Za-z0-9_-]{1,32}$"


class Channel(StrEnum):
    APP = "app"  # mobile bank app
    MINI_PROGRAM = "mini_program"  # WeChat mini-program
    H5 = "h5"


class Model(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


def _roles(value: list[Role]) -> list[Role]:
    if not value:
        raise ValueError("at least one role is needed")
    return sorted(set(value))


class OrgRead(Model):
    id: str
    parent_id: str | None
    level: str
    name_zh: str
    name_en: str


class UserCreate(Model):
    username: str = Field(pattern=USERNAME, description="Lower-case login name.")
    display_name: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=200)
    org_id: str = Field(pattern=ORG_ID, description="The org the user belongs to; it sees that org's subtree.")
    roles: list[Role] = Field(min_length=1)

    _sorted = field_validator("roles")(_roles)


class UserUpdate(Model):
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    org_id: str | None = Field(default=None, pattern=ORG_ID)
    roles: list[Role] | None = Field(default=None, min_length=1)
    active: bool | None = None

    @field_validator("roles")
    @classmethod
    def _sorted(cls, value: list[Role] | None) -> list[Role] | None:
        return None if value is None else _roles(value)


class UserRead(Model):
    id: int
    username: str
    display_name: str
    org_id: str
    roles: list[Role]
    active: bool
    locked_until: datetime | None
    created_at: datetime


class PasswordReset(Model):
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=200)


class PasswordChange(Model):
    old_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=200)


class LoginRequest(Model):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class LoginResponse(Model):
    token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    expires_at: datetime
    user: UserRead


class Me(Model):
    kind: str
    name: str
    org_id: str
    roles: list[Role]
    permissions: list[str]


class ApiKeyCreate(Model):
    app: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{1,63}$", description="Channel application, e.g. mobile-bank.")
    channel: Channel
    org_id: str = Field(pattern=ORG_ID)
    expires_at: datetime | None = Field(default=None, description="Optional hard expiry (aware datetime).")

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("expires_at needs a time zone, e.g. 2027-01-01T00:00:00+08:00")
        return value


class ApiKeyRead(Model):
    id: int
    prefix: str
    app: str
    channel: Channel
    org_id: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by_id: int | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key. Shown once; store it in the channel application's vault.")


class AuditRead(Model):
    id: int
    at: datetime
    actor: str
    actor_org_id: str | None
    action: str
    outcome: str
    object_type: str
    object_id: str | None
    org_id: str | None
    source: str
    request_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
