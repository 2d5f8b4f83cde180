"""Imported tags: a bank's own customer → value lists (a score computed elsewhere, a product
holding, a KYC grade) kept as tags beside the built-in ones.

A file is CSV or Parquet with the columns ``customer_id,value``. It is validated by the same
loader as every canonical table (:func:`bankgrowth.warehouse.ingest.load_file`): a bad line is
reported with file, line, field, expected and found and kept in the quarantine; a customer the
warehouse does not know is reported, not dropped silently; the good lines are loaded. Each import
replaces the tag's values in one transaction, and only when at least one line was good.

Imported values are refreshed by importing, not by the nightly run: every stored tag version
shows the values of the latest import (:func:`attach`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir

from bankgrowth.errors import Invalid, NotFound
from bankgrowth.insight.tags import BUILTIN_TAGS, Category, Tag
from bankgrowth.warehouse.engine import create_if_missing
from bankgrowth.warehouse.ingest import LoadReport, ProgressFn, load_file
from bankgrowth.warehouse.schema import Column, ForeignKey, TableSpec

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

DEFINITIONS = "imported_tags"
DEFINITIONS_SCHEMA = ibis.schema(
    {
        "name": "string",
        "zh": "string",
        "en": "string",
        "description": "string",
        "category": "string",
        "dtype": "string",
        "file": "string",
        "load_id": "string",
        "rows": "int64",
        "rejected": "int64",
        "imported_at": "timestamp('UTC')",
    }
)
# One import or removal at a time in a process: the API serves requests on threads, each with its
# own connection, and two imports would share the staging table and race to create the definitions.
# Other processes are kept out by DuckDB's lock on the file.
_WRITING = threading.Lock()
TYPES = ("string", "int", "bool", "date")
"""Value types an imported tag may have (the loader's column kinds)."""
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,47}$")
# computed on read beside the declared tags; an imported tag may not take these names either, nor
# "imported" (GET /api/v1/tags/imported lists the imported tags)
RESERVED = frozenset(
    {t.name for t in BUILTIN_TAGS}
    | {"customer_id", "stage", "rfm_r", "rfm_f", "rfm_m", "rfc_c", "rfm_score", "rfm_segment", "value_tier"}
    | {"imported"}
)


@dataclass(frozen=True)
class ImportedTag:
    tag: Tag
    file: str
    rows: int
    rejected: int
    imported_at: datetime


def values_table(name: str) -> str:
    return f"imported_tag_{name}"


def spec_for(name: str, dtype: str) -> TableSpec:
    """What a file of the tag ``name`` must hold, in the loader's terms."""
    return TableSpec(
        name=values_table(name),
        description=f"Values of the imported tag {name}.",
        columns=(
            Column("customer_id", "int", "The bank's customer number.", min=1),
            Column("value", dtype, f"The value of {name}."),  # type: ignore[arg-type]
        ),
        primary_key="customer_id",
        foreign_keys=(ForeignKey("customer_id", "customers", "customer_id"),),
    )


def _check(name: str, dtype: str, category: str) -> None:
    if not _NAME.match(name):
        raise Invalid(
            f"tag name {name!r}: expected 2-48 characters of a-z, 0-9 and _, starting with a letter",
            f"标签名 {name!r} 不合法：应为 2-48 位小写字母、数字或下划线，以字母开头",
            code="invalid_tag_name",
        )
    if name in RESERVED:
        raise Invalid(
            f"tag name {name!r} is taken by a built-in tag or column; choose another name",
            f"标签名 {name!r} 已被内置标签或字段占用，请换一个",
            code="tag_name_taken",
        )
    if dtype not in TYPES:
        raise Invalid(
            f"tag type {dtype!r}: expected one of {', '.join(TYPES)}",
            f"标签类型 {dtype!r} 不支持，可选：{', '.join(TYPES)}",
            code="invalid_tag_type",
        )
    categories = Category.__args__  # type: ignore[attr-defined]
    if category not in categories:
        raise Invalid(
            f"category {category!r}: expected one of {', '.join(categories)}",
            f"类别 {category!r} 不支持，可选：{', '.join(categories)}",
            code="invalid_tag_category",
        )


def import_tag(
    con: BaseBackend,
    path: Path,
    *,
    name: str,
    zh: str,
    en: str,
    dtype: str = "string",
    category: str = "finance",
    description: str = "",
    encoding: str = "utf-8",
    timezone: str = "Asia/Shanghai",
    progress: ProgressFn | None = None,
    source: str | None = None,
) -> LoadReport:
    """Validate ``path`` and make its good lines the values of the imported tag ``name``.

    Returns the loader's report; when no line was good the tag keeps its previous values and the
    report says so in a warning. ``source`` names the file where ``path`` is a temporary copy (an
    upload), in the report and in the tag's record."""
    _check(name, dtype, category)
    with _WRITING:
        spec = spec_for(name, dtype)
        target = values_table(name)
        staging = f"{target}__next"
        file = source or str(path)
        con.create_table(staging, schema=spec.ibis_schema, overwrite=True)
        try:
            report = load_file(
                con,
                path,
                spec=spec,
                into=staging,
                encoding=encoding,
                timezone=timezone,
                progress=progress,
                source=source,
            )
            if report.loaded == 0:
                report.warnings.append(f"no line of {file} was loaded; tag {name} keeps its previous values")
                return report
            create_if_missing(con, DEFINITIONS, DEFINITIONS_SCHEMA)
            row = {
                "name": name,
                "zh": zh,
                "en": en,
                "description": description or f"Imported from {Path(file).name}.",
                "category": category,
                "dtype": dtype,
                "file": file,
                "load_id": report.load_id,
                "rows": report.loaded,
                "rejected": report.read - report.loaded,
                "imported_at": datetime.now(UTC),
            }
            con.create_table(f"{staging}_definition", ibis.memtable([row], schema=DEFINITIONS_SCHEMA), overwrite=True)
            con.raw_sql(  # type: ignore[attr-defined]
                f"BEGIN TRANSACTION; DROP TABLE IF EXISTS {target}; ALTER TABLE {staging} RENAME TO {target}; "
                f"DELETE FROM {DEFINITIONS} WHERE name = '{name}'; "
                f"INSERT INTO {DEFINITIONS} SELECT * FROM {staging}_definition; COMMIT"
            )
        finally:
            con.drop_table(staging, force=True)
            con.drop_table(f"{staging}_definition", force=True)
        return report


def _tag(row: dict[str, Any]) -> Tag:
    name = row["name"]
    return Tag(
        name,
        row["zh"],
        row["en"],
        row["description"],
        row["category"],
        "imported",
        row["dtype"],
        "imported",  # type: ignore[arg-type]
        lambda c: c.t[name],
        refresh="on import",
    )


def imported(con: BaseBackend) -> list[ImportedTag]:
    """The imported tags, by name."""
    if DEFINITIONS not in con.list_tables():
        return []
    rows = con.table(DEFINITIONS).order_by("name").to_pyarrow().to_pylist()
    return [ImportedTag(_tag(r), r["file"], r["rows"], r["rejected"], r["imported_at"]) for r in rows]


def remove(con: BaseBackend, name: str) -> None:
    """Forget the imported tag ``name`` and its values."""
    with _WRITING:
        if name not in {i.tag.name for i in imported(con)}:
            raise NotFound(f"no imported tag {name!r}", f"没有导入标签 {name!r}", code="unknown_tag")
        con.raw_sql(  # type: ignore[attr-defined]
            f"BEGIN TRANSACTION; DROP TABLE IF EXISTS {values_table(name)}; "
            f"DELETE FROM {DEFINITIONS} WHERE name = '{name}'; COMMIT"
        )


def attach(con: BaseBackend, t: ir.Table) -> ir.Table:
    """``t`` (a tag table) with a column per imported tag; NULL for customers not in the file."""
    for item in imported(con):
        name = item.tag.name
        values = con.table(values_table(name))
        values = values.select(_iid=values.customer_id, **{name: values.value})
        t = t.left_join(values, t.customer_id == values._iid).drop("_iid")
    return t
