"""Secrets: password hashing (Argon2id), bearer tokens and channel API keys, pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # Argon2id with the library's current (RFC 9106 low-memory) parameters
KEY_PREFIX = "bgk"
MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def new_token() -> str:
    """A console bearer token: 256 random bits."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Tokens and keys carry 256 random bits, so a plain SHA-256 is a sound one-way store."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_key() -> tuple[str, str]:
    """``(prefix, key)``: the key is ``bgk_<prefix>_<secret>``; the prefix is public and indexed."""
    prefix = secrets.token_hex(4)
    return prefix, f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def key_prefix(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 8:
        return None
    return parts[1]


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def pseudonym(customer_id: int | str, secret: str) -> str:
    """A stable pseudonym for exports: HMAC-SHA256 of the id under the deployment's secret,
    so the same customer maps to the same value across exports but cannot be reversed."""
    return hmac.new(secret.encode(), str(customer_id).encode(), hashlib.sha256).hexdigest()[:20]


@cache
def dummy_hash() -> str:
    """Checked against when the user is unknown, so a wrong name takes as long as a wrong password."""
    return hash_password("bankgrowth-timing-equaliser")
