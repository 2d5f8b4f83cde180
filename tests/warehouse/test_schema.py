"""The table specs are the single source of truth; the docs and every schema follow them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bankgrowth.warehouse import schema
from bankgrowth.warehouse.docs import data_model_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_data_model_doc_is_generated_from_the_specs() -> None:
    expected = data_model_markdown(schema.TABLES.values())
    assert (ROOT / "docs" / "data-model.md").read_text(encoding="utf-8") == expected, (
        "docs/data-model.md is stale: run `make docs`"
    )


@pytest.mark.parametrize("spec", list(schema.TABLES.values()), ids=lambda s: s.name)
def test_ibis_and_arrow_schemas_agree(spec: schema.TableSpec) -> None:
    assert spec.ibis_schema.to_pyarrow().names == spec.arrow_schema.names
    for ibis_field, arrow_field in zip(spec.ibis_schema.to_pyarrow(), spec.arrow_schema, strict=True):
        assert ibis_field.type == arrow_field.type, spec.name
        assert ibis_field.nullable == arrow_field.nullable, spec.name
    assert spec.primary_key in spec.column_names
    for fk in spec.foreign_keys:
        assert fk.ref_column in schema.TABLES[fk.table].column_names


@pytest.mark.parametrize(
    ("file_name", "table"),
    [
        ("transactions.csv", "transactions"),
        ("transactions-2026-10.parquet", "transactions"),
        ("quickpay_bindings_01.csv", "quickpay_bindings"),
        ("cards.parquet", "cards"),
        ("misc.csv", None),
    ],
)
def test_table_is_recognised_from_the_file_name(file_name: str, table: str | None) -> None:
    spec = schema.table_for_file_name(file_name)
    assert (spec.name if spec else None) == table
