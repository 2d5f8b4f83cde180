"""Masking of personal data (PIPL). Shown masked by default; only roles with the ``reveal``
permission see it in clear, and every reveal is audited (``platform.flows``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def mask_phone(phone: str | None) -> str | None:
    """``13812341234`` → ``138****1234``."""
    if not phone:
        return phone
    if len(phone) < 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_name(name: str | None) -> str | None:
    """``王小明`` → ``王*明``; ``王明`` → ``王*``."""
    if not name:
        return name
    if len(name) <= 2:
        return name[0] + "*" * (len(name) - 1)
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_id_number(value: str | None) -> str | None:
    """Keep the first 6 (region) and last 4 characters."""
    if not value:
        return value
    if len(value) <= 10:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


MASKS: dict[str, Callable[[str | None], str | None]] = {
    "name": mask_name,
    "phone": mask_phone,
    "id_number": mask_id_number,
}


def mask_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` with every personal-data column masked."""
    return {k: MASKS[k](v) if k in MASKS else v for k, v in row.items()}
