"""One error model for every front end: a stable machine code, an HTTP status, and a message in
Chinese and English. Services raise these; the API turns them into JSON, the CLI into one red line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, ClassVar


class BankgrowthError(Exception):
    """A failure a caller can act on. ``code`` is stable across versions; messages may be reworded."""

    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(self, en: str, zh: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(en)
        self.en = en
        self.zh = zh
        self.code = code or self.default_code
        self.details = details or {}

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": {"zh": self.zh, "en": self.en}}
        if self.details:
            error["details"] = self.details
        if request_id:
            error["request_id"] = request_id
        return {"error": error}


class Invalid(BankgrowthError, ValueError):
    status = 422
    default_code = "invalid"


class Unauthenticated(BankgrowthError):
    status = 401
    default_code = "unauthenticated"


class Forbidden(BankgrowthError, PermissionError):
    status = 403
    default_code = "forbidden"


class NotFound(BankgrowthError, LookupError):
    """Also raised for objects outside the caller's scope, so that scope does not leak existence."""

    status = 404
    default_code = "not_found"


class Conflict(BankgrowthError):
    status = 409
    default_code = "conflict"


class TooLarge(BankgrowthError):
    status = 413
    default_code = "too_large"


class UnsupportedMediaType(BankgrowthError):
    status = 415
    default_code = "unsupported_media_type"


class Unavailable(BankgrowthError):
    status = 503
    default_code = "unavailable"


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name a mistyped ``name`` most likely meant, for a "did you mean" hint."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return found[0] if found else None
