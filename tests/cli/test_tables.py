"""A table printed on a terminal narrower than it: every value arrives whole, none is cut to "…"."""

from __future__ import annotations

import io
import re
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from bankgrowth.cli.render import matrix
from bankgrowth.cli.tables import show
from bankgrowth.insight.service import Matrix

_BOX = re.compile("[\u2500-\u257f]")  # the box-drawing characters of a table's borders
_WORD = st.text(alphabet="abcxyz0123456789,.%+-¥流失超级用户", min_size=1, max_size=10)
_CELL = st.lists(_WORD, min_size=0, max_size=3).map(" ".join)


def _printed(table: Table, width: int, keys: int = 1) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    show(console, table, keys=keys)
    return console.export_text()


def _words(text: str) -> Counter[str]:
    return Counter(_BOX.sub(" ", text).split())


@st.composite
def _tables(draw: st.DrawFn) -> tuple[Table, list[str]]:
    columns = draw(st.integers(1, 8))
    rows = draw(st.lists(st.lists(_CELL, min_size=columns, max_size=columns), max_size=5))
    table = Table(title=draw(st.sampled_from([None, "title"])), show_edge=draw(st.booleans()))
    cells: list[str] = []
    for _ in range(columns):
        header = draw(_CELL)
        table.add_column(
            header,
            justify=draw(st.sampled_from(["left", "right"])),
            no_wrap=draw(st.booleans()),
            overflow=draw(st.sampled_from(["ellipsis", "fold"])),
        )
        cells.append(header)
    for row in rows:
        table.add_row(*row)
        cells.extend(row)
    return table, cells


@settings(max_examples=300, deadline=None)
@given(_tables(), st.integers(min_value=30, max_value=160), st.integers(min_value=0, max_value=2))
def test_no_value_is_cut_at_any_width(drawn: tuple[Table, list[str]], width: int, keys: int) -> None:
    # given: a table of words and numbers, some columns not allowed to wrap
    table, cells = drawn
    # when: it is printed at a width that may be far narrower than it
    printed = _printed(table, width, keys)
    # then: nothing is shortened, and every word of every cell and header is there whole
    assert "…" not in printed
    missing = Counter(word for cell in cells for word in cell.split()) - _words(printed)
    assert not missing, f"lost at width {width}: {dict(missing)}\n{printed}"
    # and: no line is wider than the terminal, as long as the key columns and any one column fit in it
    if all(len(cell) <= 10 for cell in cells):  # one word, or a no-wrap cell, with the keys in 30
        assert max(Console(width=width).measure(line).maximum for line in printed.splitlines()) <= width


def test_a_wide_matrix_splits_into_blocks_that_repeat_the_row_labels() -> None:
    # given: the stage flow matrix of a 2M-customer bank, wider than an 80-column terminal
    stages = ["unbound", "bound", "transacting", "super", "at_risk", "churned", "won_back"]
    counts = {(a, b): 1_234_567 if a == b else 12_345 for a in stages for b in stages}
    # when
    console = Console(record=True, width=80, color_system=None)
    matrix(console, Matrix(tuple(stages), tuple(stages), counts), "Flows")
    printed = console.export_text()
    # then: two blocks, each within 80 columns, each row label in both, every count whole
    lines = printed.splitlines()
    assert max(console.measure(line).maximum for line in lines) <= 80
    assert sum(1 for line in lines if line.startswith("│") and line.split("│")[1].strip() == "transacting") == 2
    assert printed.count("Flows") == 1
    assert _words(printed)["1,234,567"] == 7 and _words(printed)["12,345"] == 42
    assert "…" not in printed


def test_a_table_that_fits_is_printed_as_it_is() -> None:
    # given: a narrow table
    table = Table(title="pools")
    table.add_column("code")
    table.add_column("left", justify="right")
    table.add_row("demo.activation", "1,000,000")
    # when / then: the same at 80 columns through `show` as printed directly
    direct = Console(record=True, width=80, color_system=None)
    direct.print(table)
    assert _printed(table, 80) == direct.export_text()
