"""Masking of personal data (PIPL). Shown masked by default; only roles with the ``reveal``
permission see it in clear, and every reveal is audited (``platform.flows``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from bankgrowth.platform.security import pseudonym


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


def write_extract(table: pa.Table, path: Path, *, pseudonymize_with: str | None = None) -> int:
    """Write an extract of customer rows to ``path`` (CSV for ``.csv``, Parquet otherwise); with
    ``pseudonymize_with`` (the deployment's secret) ``customer_id`` becomes a keyed pseudonym,
    ``customer_key``. Returns the rows written."""
    if pseudonymize_with is not None:
        keys = pa.array([pseudonym(v, pseudonymize_with) for v in table.column("customer_id").to_pylist()])
        table = table.set_column(table.schema.get_field_index("customer_id"), "customer_key", keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    return int(table.num_rows)
