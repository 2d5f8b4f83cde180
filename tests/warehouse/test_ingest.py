"""Ingest: every row read is loaded, quarantined with a reason, or skipped as a duplicate."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bankgrowth.warehouse import engine, ingest
from bankgrowth.warehouse.ingest import IngestFileError

BRANCHES = "branch_id,parent_id,level,name_zh,name_en,city,city_tier\nHQ,,hq,总行,Head Office,Beijing,1\nB01,HQ,branch,杭州分行,Hangzhou,Hangzhou,2\n"
CUSTOMER_HEADER = "customer_id,branch_id,name,phone,birth_year,gender,city_tier,registered_on,auth_level,marketing_consent,referrer_id"


def customer_row(i: int, **over: str) -> str:
    values = {
        "customer_id": str(i),
        "branch_id": "B01",
        "name": f"王{i}",
        "phone": f"138{i:08d}",
        "birth_year": "1985",
        "gender": "F",
        "city_tier": "2",
        "registered_on": "2024-03-01",
        "auth_level": "account_i",
        "marketing_consent": "true",
        "referrer_id": "",
    }
    values.update(over)
    return ",".join(values[c] for c in CUSTOMER_HEADER.split(","))


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


@pytest.fixture
def with_branches(warehouse, tmp_path: Path):  # type: ignore[no-untyped-def]
    ingest.load_file(warehouse, write(tmp_path / "branches.csv", BRANCHES))
    return warehouse


def rows(con, table: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return con.table(table).to_pyarrow().to_pylist()


def test_bad_rows_are_quarantined_with_file_line_field_expected_found(with_branches, tmp_path: Path) -> None:
    # given: a file whose rows 3..10 each break one rule
    lines = [
        CUSTOMER_HEADER,
        customer_row(1),
        customer_row(2, customer_id="abc"),
        customer_row(3, gender="X"),
        customer_row(4, birth_year="1850"),
        customer_row(5, registered_on="2024-13-45"),
        customer_row(6, phone="12345"),
        customer_row(7, marketing_consent="maybe"),
        customer_row(8, branch_id=""),
        customer_row(9, branch_id="NOPE"),
        customer_row(10),
    ]
    path = write(tmp_path / "customers.csv", "\n".join(lines) + "\n")
    # when
    report = ingest.load_file(with_branches, path)
    # then: the good rows load, each bad one is reported at its physical line
    assert (report.read, report.loaded, report.quarantined, report.duplicates) == (10, 2, 8, 0)
    assert report.reconciles
    by_line = {p.line: p for p in report.problems}
    assert by_line[3].field == "customer_id" and by_line[3].found == "abc" and "integer" in by_line[3].expected
    assert by_line[4].field == "gender" and by_line[4].found == "X" and "F, M, U" in by_line[4].expected
    assert by_line[5].field == "birth_year" and by_line[5].found == "1850"
    assert by_line[6].field == "registered_on" and by_line[6].found == "2024-13-45"
    assert by_line[7].field == "phone"
    assert by_line[8].field == "marketing_consent" and by_line[8].found == "maybe"
    assert by_line[9].field == "branch_id" and by_line[9].found == "(empty)"
    assert by_line[10].field == "branch_id" and "exists in branches" in by_line[10].expected
    assert sorted(r["customer_id"] for r in rows(with_branches, "customers")) == [1, 10]
    quarantined = rows(with_branches, "_quarantine")
    assert {q["line"] for q in quarantined} == set(range(3, 11))
    assert all(q["file"] == str(path) for q in quarantined)


def test_loading_the_same_file_twice_changes_nothing(with_branches, tmp_path: Path) -> None:
    # given
    path = write(
        tmp_path / "customers.csv", "\n".join([CUSTOMER_HEADER, customer_row(1), customer_row(2, gender="?")]) + "\n"
    )
    first = ingest.load_file(with_branches, path)
    before = (len(rows(with_branches, "customers")), len(rows(with_branches, "_quarantine")))
    # when
    second = ingest.load_file(with_branches, path)
    # then
    assert first.loaded == 1 and second.already_loaded
    assert (len(rows(with_branches, "customers")), len(rows(with_branches, "_quarantine"))) == before


def test_overlapping_files_skip_identical_rows_and_quarantine_conflicts(with_branches, tmp_path: Path) -> None:
    # given: a first file, then a second that repeats row 1, changes row 2 and adds row 3
    ingest.load_file(
        with_branches,
        write(tmp_path / "customers-1.csv", "\n".join([CUSTOMER_HEADER, customer_row(1), customer_row(2)]) + "\n"),
    )
    second = write(
        tmp_path / "customers-2.csv",
        "\n".join([CUSTOMER_HEADER, customer_row(1), customer_row(2, gender="M"), customer_row(3)]) + "\n",
    )
    # when
    report = ingest.load_file(with_branches, second)
    # then
    assert (report.read, report.loaded, report.quarantined, report.duplicates) == (3, 1, 1, 1)
    assert report.problems[0].line == 3 and report.problems[0].field == "customer_id"
    genders = {r["customer_id"]: r["gender"] for r in rows(with_branches, "customers")}
    assert genders == {1: "F", 2: "F", 3: "F"}


def test_duplicate_ids_inside_one_file(with_branches, tmp_path: Path) -> None:
    # given: line 3 repeats line 2 exactly, line 4 reuses its id with other content
    text = "\n".join([CUSTOMER_HEADER, customer_row(1), customer_row(1), customer_row(1, name="李四"), customer_row(2)])
    # when
    report = ingest.load_file(with_branches, write(tmp_path / "customers.csv", text + "\n"))
    # then
    assert (report.loaded, report.duplicates, report.quarantined) == (2, 1, 1)
    assert report.problems[0].line == 4 and "first at line 2 with other values" in report.problems[0].found
    assert {r["name"] for r in rows(with_branches, "customers")} == {"王1", "王2"}


def test_referential_integrity_and_card_ownership(with_branches, tmp_path: Path) -> None:
    # given: two customers, a card each
    ingest.load_file(
        with_branches,
        write(tmp_path / "customers.csv", "\n".join([CUSTOMER_HEADER, customer_row(1), customer_row(2)]) + "\n"),
    )
    cards = "card_id,customer_id,card_type,account_class,opened_on,closed_on\n11,1,debit,I,2024-03-01,\n12,2,credit,,2024-03-01,\n13,9,debit,II,2024-03-01,\n"
    card_report = ingest.load_file(with_branches, write(tmp_path / "cards.csv", cards))
    header = "txn_id,customer_id,card_id,institution,amount_fen,txn_at,merchant_category,scene"
    txns = "\n".join(
        [
            header,
            "1,1,11,wechat_pay,1250,2026-10-01 12:30:00,dining,offline",
            "2,1,12,alipay,990,2026-10-01T12:30:00+08:00,grocery,online",  # card 12 is customer 2's
            "3,7,11,alipay,990,2026-10-01T04:30:00Z,grocery,online",  # unknown customer
            "4,2,99,alipay,990,2026-10-01T04:30:00Z,grocery,online",  # unknown card
            "5,2,12,alipay,-5,2026-10-01T04:30:00Z,grocery,online",  # negative amount
            "6,2,12,paypal,5,2026-10-01T04:30:00Z,grocery,online",  # unknown institution
            "7,2,12,alipay,500,2026-10-01T04:30:00Z,grocery,withdrawal",
        ]
    )
    # when
    report = ingest.load_file(with_branches, write(tmp_path / "transactions.csv", txns + "\n"))
    # then
    assert card_report.loaded == 2 and card_report.problems[0].field == "customer_id"
    assert (report.loaded, report.quarantined) == (2, 5)
    fields: dict[int, set[str]] = {}
    for p in report.problems:
        fields.setdefault(p.line, set()).add(p.field)
    assert fields == {
        3: {"card_id"},
        4: {"customer_id", "card_id"},
        5: {"card_id"},
        6: {"amount_fen"},
        7: {"institution"},
    }
    assert any("belongs to customer 2" in p.found for p in report.problems if p.line == 3)
    loaded = {r["txn_id"]: r for r in rows(with_branches, "transactions")}
    # a local time without offset is read in Asia/Shanghai: the same instant as 04:30Z
    assert loaded[1]["txn_at"] == loaded[7]["txn_at"]


def test_cross_field_order_is_checked(with_branches, tmp_path: Path) -> None:
    ingest.load_file(
        with_branches, write(tmp_path / "customers.csv", "\n".join([CUSTOMER_HEADER, customer_row(1)]) + "\n")
    )
    cards = "card_id,customer_id,card_type,account_class,opened_on,closed_on\n11,1,debit,I,2024-03-01,2023-01-01\n12,1,debit,I,2024-03-01,2025-01-01\n"
    report = ingest.load_file(with_branches, write(tmp_path / "cards.csv", cards))
    assert report.loaded == 1
    assert report.problems[0].line == 2 and report.problems[0].field == "closed_on"


def test_ragged_blank_and_truncated_lines_keep_exact_line_numbers(with_branches, tmp_path: Path) -> None:
    # given: a blank line, a line with an extra field, and a last line cut short without newline
    text = "\n".join(
        [
            CUSTOMER_HEADER,
            customer_row(1),
            "",
            customer_row(2) + ",extra",
            customer_row(3),
            customer_row(4)[:25],
        ]
    )
    # when
    report = ingest.load_file(with_branches, write(tmp_path / "customers.csv", text))
    # then
    lines = {p.line: p for p in report.problems}
    assert report.loaded == 2 and report.reconciles
    assert set(lines) == {3, 4, 6}
    assert "truncated" in lines[6].found
    assert any("truncated" in w for w in report.warnings)
    assert {r["customer_id"] for r in rows(with_branches, "customers")} == {1, 3}


def test_crlf_bom_and_quoted_commas(with_branches, tmp_path: Path) -> None:
    text = "\ufeff" + CUSTOMER_HEADER + "\r\n" + customer_row(1, name='"王,五"') + "\r\n" + customer_row(2) + "\r\n"
    report = ingest.load_file(with_branches, write(tmp_path / "customers.csv", text))
    assert (report.loaded, report.quarantined) == (2, 0)
    assert {r["name"] for r in rows(with_branches, "customers")} == {"王,五", "王2"}


def test_gbk_file_gets_one_clear_message_and_loads_with_encoding(with_branches, tmp_path: Path) -> None:
    path = write(
        tmp_path / "customers.csv",
        "\n".join([CUSTOMER_HEADER, customer_row(1), customer_row(2, name="张三丰")]) + "\n",
        "gbk",
    )
    with pytest.raises(IngestFileError, match=r"not valid utf-8 text .*--encoding gb18030"):
        ingest.load_file(with_branches, path)
    assert rows(with_branches, "customers") == []
    report = ingest.load_file(with_branches, path, encoding="gb18030")
    assert report.loaded == 2
    assert "张三丰" in {r["name"] for r in rows(with_branches, "customers")}


def test_an_encoding_that_does_not_exist_is_named_as_unknown(with_branches, tmp_path: Path) -> None:
    path = write(tmp_path / "customers.csv", CUSTOMER_HEADER + "\n" + customer_row(1) + "\n")
    # when: a typo in the encoding, not a file in another one
    with pytest.raises(IngestFileError, match=r"customers\.csv: unknown text encoding 'gb1830'; expected one such as"):
        ingest.load_file(with_branches, path, encoding="gb1830")
    # then
    assert rows(with_branches, "customers") == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("customers.csv", "", r"empty \(0 bytes\)"),
        ("customers.csv", CUSTOMER_HEADER.replace(",gender", "") + "\n", r"missing column\(s\) gender"),
        ("customers.csv", CUSTOMER_HEADER + ",vip\n", r"unexpected column\(s\) vip"),
        ("customers.json", "{}", r"unsupported file type \.json"),
        ("clients.csv", CUSTOMER_HEADER + "\n", r"cannot tell which table"),
        ("customers.parquet", "PAR1 this is not parquet", r"not a readable Parquet file"),
    ],
)
def test_structural_problems_refuse_the_file_with_one_message(
    warehouse, tmp_path: Path, name: str, content: str, message: str
) -> None:
    with pytest.raises(IngestFileError, match=message):
        ingest.load_file(warehouse, write(tmp_path / name, content))


def test_header_only_file_loads_nothing_and_reconciles(warehouse, tmp_path: Path) -> None:
    report = ingest.load_file(warehouse, write(tmp_path / "customers.csv", CUSTOMER_HEADER + "\n"))
    assert (report.read, report.loaded) == (0, 0) and report.reconciles


def test_truncated_parquet_is_refused(warehouse, small_bank, tmp_path: Path) -> None:
    data = (small_bank.bank_dir / "customers.parquet").read_bytes()
    path = tmp_path / "customers.parquet"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestFileError, match="Parquet"):
        ingest.load_file(warehouse, path)


def test_parquet_with_wrong_types_is_checked_row_by_row(with_branches, tmp_path: Path) -> None:
    # given: birth_year as float with a fraction, city tier out of range, naive timestamps
    table = pa.table(
        {
            "customer_id": [1, 2, 3],
            "branch_id": ["B01", "B01", "B01"],
            "name": ["a", "b", "c"],
            "phone": ["13800000001", "13800000002", "13800000003"],
            "birth_year": [1980.0, 1990.5, 2000.0],
            "gender": ["F", "M", "U"],
            "city_tier": [1, 2, 9],
            "registered_on": pa.array([20000, 20001, 20002], pa.date32()),
            "auth_level": ["phone", "real_name", "account_i"],
            "marketing_consent": [True, False, None],
            "referrer_id": pa.array([None, 1, None], pa.int32()),
        }
    )
    path = tmp_path / "customers.parquet"
    pq.write_table(table, path)
    # when
    report = ingest.load_file(with_branches, path)
    # then
    assert report.loaded == 1
    assert {(p.line, p.field) for p in report.problems} == {
        (2, "birth_year"),
        (3, "city_tier"),
        (3, "marketing_consent"),
    }


def test_simulated_bank_loads_clean(small_bank, warehouse) -> None:
    reports = [ingest.load_file(warehouse, f) for f in ingest.expand_paths([small_bank.bank_dir])]
    assert [r.table for r in reports][:4] == ["branches", "customers", "cards", "quickpay_bindings"]
    assert all(r.quarantined == 0 and r.duplicates == 0 and r.reconciles for r in reports)
    assert {r.table: r.loaded for r in reports} == small_bank.rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_corruption_never_loses_a_good_row(tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    # given: 30 valid rows, some of which are corrupted in a random field with random junk
    tmp = tmp_path_factory.mktemp("fuzz")
    con = engine.connect(f"duckdb:///{tmp / 'w.duckdb'}")
    default_block = ingest.batch_bytes
    ingest.batch_bytes = data.draw(st.sampled_from([700, 2048, default_block]))  # one batch or many
    try:
        ingest.load_file(con, write(tmp / "branches.csv", BRANCHES))
        fields = CUSTOMER_HEADER.split(",")
        bad_ids = data.draw(st.sets(st.integers(1, 30), max_size=12))
        junk = st.sampled_from(["x", "-1", "99999999999999999999", "1.5", "2024-02-30", "NOPE", "\u00e9\u00e9", ""])
        lines = [CUSTOMER_HEADER]
        for i in range(1, 31):
            if i not in bad_ids:
                lines.append(customer_row(i))
            elif data.draw(st.booleans()):  # a bad value in one field
                field = data.draw(st.sampled_from([f for f in fields if f not in ("name", "referrer_id")]))
                lines.append(customer_row(i, **{field: data.draw(junk)}))
            else:  # a line that does not split into the right number of fields
                lines.append(data.draw(st.sampled_from([customer_row(i) + ",x", customer_row(i)[:30], ""])))
        # when
        report = ingest.load_file(con, write(tmp / "customers.csv", "\n".join(lines) + "\n"))
        loaded = {r["customer_id"] for r in con.table("customers").to_pyarrow().to_pylist()}
        # then: every untouched row loads; nothing is lost; bad rows are reported at their lines
        assert report.reconciles and report.read == 30
        assert set(range(1, 31)) - bad_ids <= loaded
        assert {p.line - 1 for p in report.problems} <= bad_ids
        assert report.loaded + report.quarantined == 30
    finally:
        ingest.batch_bytes = default_block
        con.disconnect()


def test_many_batches_keep_line_numbers_exact(with_branches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: 400 rows read in blocks of ~1 KiB, with broken lines scattered across the blocks
    monkeypatch.setattr(ingest, "batch_bytes", 1024)
    broken = {7, 55, 56, 190, 333, 401}  # physical line numbers
    lines = [CUSTOMER_HEADER]
    for line_no in range(2, 402):
        cid = line_no - 1
        if line_no in (7, 190):
            lines.append(customer_row(cid) + ",surplus")
        elif line_no in (55, 333):
            lines.append(customer_row(cid, gender="?"))
        elif line_no == 56:
            lines.append("")
        elif line_no == 401:
            lines.append(customer_row(cid)[:20])
        else:
            lines.append(customer_row(cid))
    # when
    report = ingest.load_file(with_branches, write(tmp_path / "customers.csv", "\n".join(lines)))
    # then
    assert report.read == 400 and report.reconciles
    assert {p.line for p in report.problems} == broken
    loaded = {r["customer_id"] for r in rows(with_branches, "customers")}
    assert loaded == {n - 1 for n in range(2, 402)} - {n - 1 for n in broken}
