"""A bank's own customer → value list becomes a tag, validated like every load."""

from __future__ import annotations

from pathlib import Path

import pytest

from bankgrowth.errors import Invalid
from bankgrowth.insight import imported, service, store
from tests.conftest import warehouse_copy


@pytest.fixture
def con(insight_bank: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    with warehouse_copy(insight_bank, tmp_path) as (c, _):
        yield c


def _values(con, name: str) -> dict[int, object]:  # type: ignore[no-untyped-def]
    t = store.tags_table(con).select("customer_id", name)
    return {r["customer_id"]: r[name] for r in t.to_pyarrow().to_pylist() if r[name] is not None}


def test_good_lines_load_bad_lines_are_reported_with_line_field_expected_found(con, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # given: a file with good lines, a non-integer, an unknown customer, a conflicting repeat
    f = tmp_path / "wealth.csv"
    f.write_text("customer_id,value\n1,3\n2,5\n3,abc\n999999,4\n1,4\n4,1\n")
    # when
    report = imported.import_tag(con, f, name="wealth_grade", zh="财富等级", en="Wealth grade", dtype="int")
    # then: lines 2, 3 and 7 load; 4, 5 and 6 are reported, each with its reason
    assert (report.read, report.loaded) == (6, 3)
    problems = {(p.line, p.field): (p.expected, p.found) for p in report.problems}
    assert problems[(4, "value")] == ("an integer", "abc")
    assert problems[(5, "customer_id")][0] == "a customer_id that exists in customers"
    assert problems[(5, "customer_id")][1] == "999999"
    assert problems[(6, "customer_id")][1].startswith("1, first at line 2")
    quarantined = con.table("_quarantine").filter(lambda t: t.table_name == "imported_tag_wealth_grade")
    assert sorted(quarantined.line.to_pyarrow().to_pylist()) == [4, 5, 6]
    assert _values(con, "wealth_grade") == {1: 3, 2: 5, 4: 1}
    # it is a tag like the others: in the catalog, with its coverage
    [stats] = service.catalog(con, names=["wealth_grade"])
    assert stats.tag.kind == "imported" and stats.tag.zh == "财富等级"
    assert stats.coverage == pytest.approx(3 / stats.rows)


def test_a_new_import_replaces_the_values_and_an_all_bad_file_keeps_them(con, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = tmp_path / "first.csv"
    first.write_text("customer_id,value\n1,gold\n2,silver\n")
    imported.import_tag(con, first, name="card_level", zh="卡等级", en="Card level")
    second = tmp_path / "second.csv"
    second.write_text("customer_id,value\n2,gold\n3,platinum\n")
    imported.import_tag(con, second, name="card_level", zh="卡等级", en="Card level")
    assert _values(con, "card_level") == {2: "gold", 3: "platinum"}
    # when every line is bad
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,value\nx,gold\n")
    report = imported.import_tag(con, bad, name="card_level", zh="卡等级", en="Card level")
    # then nothing changes, and the report says so
    assert report.loaded == 0 and any("keeps its previous values" in w for w in report.warnings)
    assert _values(con, "card_level") == {2: "gold", 3: "platinum"}
    [item] = imported.imported(con)
    assert (item.rows, item.file) == (2, str(second))


@pytest.mark.parametrize(
    ("name", "dtype", "code"),
    [
        ("stage", "string", "tag_name_taken"),
        ("Bad Name", "string", "invalid_tag_name"),
        ("ok_name", "float", "invalid_tag_type"),
    ],
)
def test_names_and_types_are_checked_before_reading(con, tmp_path: Path, name: str, dtype: str, code: str) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "x.csv"
    f.write_text("customer_id,value\n1,1\n")
    with pytest.raises(Invalid) as err:
        imported.import_tag(con, f, name=name, zh="x", en="x", dtype=dtype)
    assert err.value.code == code


def test_two_imports_of_one_tag_at_once_leave_one_files_values(insight_bank: Path, tmp_path: Path) -> None:
    # given: two files for one tag, and two connections to one warehouse, as two API requests have
    from concurrent.futures import ThreadPoolExecutor

    from bankgrowth.warehouse import engine

    with warehouse_copy(insight_bank, tmp_path) as (con, _):
        ids = sorted(con.table("customers").customer_id.to_pyarrow().to_pylist())[:3000]
    files = {}
    for grade in ("A", "B"):
        files[grade] = tmp_path / f"{grade}.csv"
        files[grade].write_text("customer_id,value\n" + "".join(f"{i},{grade}\n" for i in ids))

    def send(grade: str) -> int:
        c = engine.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
        try:
            return imported.import_tag(c, files[grade], name="grade", zh="等级", en="Grade").loaded
        finally:
            c.disconnect()

    # when: both at once
    with ThreadPoolExecutor(2) as pool:
        loaded = list(pool.map(send, ["A", "B"]))
    # then: each import loaded its whole file, and the tag holds one file's values, not a mix
    assert loaded == [3000, 3000]
    con = engine.connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    try:
        values = set(_values(con, "grade").values())
        assert values in ({"A"}, {"B"}) and len(_values(con, "grade")) == 3000
        [item] = imported.imported(con)
        assert item.file == str(files[values.pop()])
    finally:
        con.disconnect()
