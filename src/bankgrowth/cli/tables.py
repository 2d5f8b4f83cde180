"""Printing a Rich table whole on any terminal width: a value is never cut short.

Left to itself, Rich fits a table wider than the terminal by shortening cells to "…": on an
80-column terminal a campaign's true effect became "+…" and a count "34,9…". `show` prints a table
so that nothing is lost:

1. if the table fits, it is printed as it is;
2. otherwise its wrapping columns are capped, widest first, so their text wraps at spaces — never
   below the longest word of a column, so a number or a code is never split (in a column declared
   `overflow="fold"`, a word longer than 20, a file path or a JSON value, may be), and a
   `no_wrap` column keeps its full width;
3. if even that is too wide, the columns are printed in blocks that fit, each block repeating the
   first `keys` columns so every row can still be read by its label, as pandas prints a wide frame;
   a block of one column that is still too wide (one value wider than the terminal) is printed at
   its own width, and the terminal wraps its lines.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, ConsoleOptions, RenderableType
from rich.measure import Measurement
from rich.table import Column, Table

_NATURAL = 100_000  # a width no table reaches: the one a table takes when nothing constrains it
_FOLDED = 20  # in a column declared `overflow="fold"`, a longer word may be broken across lines


def show(console: Console, table: Table, *, keys: int = 1) -> None:
    """Print `table` at the console's width, wrapping or splitting it rather than cutting a value."""
    width = console.options.max_width
    for part in _parts(console, table, keys, width):
        needed = _fit(console, part, width)
        for column in part.columns:
            # Every column is now at least as wide as its longest word, so folding never splits
            # one; it keeps what Rich's "…" would cut when a line of CJK ends in a space.
            if column.overflow == "ellipsis":
                column.overflow = "fold"
        if needed <= width:
            console.print(part)
            continue
        console.width = needed  # a value wider than the terminal: the terminal wraps its line
        try:
            console.print(part)
        finally:
            console.width = width


def _parts(console: Console, table: Table, keys: int, width: int) -> list[Table]:
    """The table itself if it can be made to fit, else blocks of its columns that each fit."""
    if _narrowest(console, table) <= width:
        return [table]
    count = len(table.columns)
    keys = max(0, min(keys, count - 1))
    blocks: list[list[int]] = []
    start = keys
    while start < count:
        end = start + 1  # one column per block at least, whether or not it fits
        while end < count and _narrowest(console, _select(table, [*range(keys), *range(start, end + 1)])) <= width:
            end += 1
        blocks.append([*range(keys), *range(start, end)])
        start = end
    last = len(blocks) - 1
    return [_select(table, block, title=i == 0, caption=i == last) for i, block in enumerate(blocks)]


def _narrowest(console: Console, table: Table) -> int:
    """The narrowest the table can be printed without splitting a word."""
    spans, overhead = _measure(console, table)
    return sum(low for low, _ in spans) + overhead


def _fit(console: Console, table: Table, width: int) -> int:
    """Cap the wrapping columns, widest first, so the table is at most `width` wide if it can be;
    the width it then takes."""
    spans, overhead = _measure(console, table)
    room = max(width - overhead, sum(low for low, _ in spans))

    def total(cap: int) -> int:
        return sum(min(high, max(low, cap)) for low, high in spans)

    widest = max((high for _, high in spans), default=0)
    if total(widest) <= room:
        return total(widest) + overhead
    low_cap, high_cap = 0, widest  # total(low_cap) <= room < total(high_cap)
    while high_cap - low_cap > 1:
        middle = (low_cap + high_cap) // 2
        low_cap, high_cap = (middle, high_cap) if total(middle) <= room else (low_cap, middle)
    for column, (low, high) in zip(table.columns, spans, strict=True):
        if high > low_cap:
            column.max_width = max(low, low_cap)
    return total(low_cap) + overhead


def _measure(console: Console, table: Table) -> tuple[list[tuple[int, int]], int]:
    """Each column's narrowest and natural width, and what the borders and padding add."""
    options = console.options.update_width(_NATURAL)
    spans = [_span(console, options, table, column) for column in table.columns]
    overhead = Measurement.get(console, options, table).maximum - sum(high for _, high in spans)
    return spans, overhead


def _span(console: Console, options: ConsoleOptions, table: Table, column: Column) -> tuple[int, int]:
    """The narrowest a column can be without splitting a word, and its natural width."""
    cells: list[RenderableType] = list(column.cells)
    if table.show_header:
        cells.append(column.header)
    if table.show_footer:
        cells.append(column.footer)
    sizes = [Measurement.get(console, options, cell) for cell in cells]
    high = max((size.maximum for size in sizes), default=1)
    low = high if column.no_wrap else max((size.minimum for size in sizes), default=1)
    if column.overflow == "fold" and not column.no_wrap:  # paths, JSON: a long one may break
        low = min(low, _FOLDED)
    if column.width is not None:
        low = high = column.width
    if column.min_width is not None:
        low, high = max(low, column.min_width), max(high, column.min_width)
    if column.max_width is not None:  # set by the table's author, or by `_fit`, never below `low`
        high = min(high, column.max_width)
        low = min(low, high)
    return low, high


def _select(table: Table, indexes: Sequence[int], *, title: bool = True, caption: bool = True) -> Table:
    """A copy of `table` with only the given columns; the title and caption kept where asked."""
    part = Table(
        title=table.title if title else None,
        caption=table.caption if caption else None,
        box=table.box,
        safe_box=table.safe_box,
        padding=table.padding,
        collapse_padding=table.collapse_padding,
        pad_edge=table.pad_edge,
        show_header=table.show_header,
        show_footer=table.show_footer,
        show_edge=table.show_edge,
        show_lines=table.show_lines,
        leading=table.leading,
        style=table.style,
        row_styles=table.row_styles,
        header_style=table.header_style,
        footer_style=table.footer_style,
        border_style=table.border_style,
        title_style=table.title_style,
        caption_style=table.caption_style,
        title_justify=table.title_justify,
        caption_justify=table.caption_justify,
        highlight=table.highlight,
        expand=table.expand,
    )
    columns = [table.columns[i] for i in indexes]
    for c in columns:
        part.add_column(
            c.header,
            c.footer,
            header_style=c.header_style,
            footer_style=c.footer_style,
            style=c.style,
            justify=c.justify,
            vertical=c.vertical,
            overflow=c.overflow,
            width=c.width,
            min_width=c.min_width,
            max_width=c.max_width,
            ratio=c.ratio,
            no_wrap=c.no_wrap,
        )
    cells = [list(c.cells) for c in columns]
    for r, row in enumerate(table.rows):
        part.add_row(*(column[r] for column in cells), style=row.style, end_section=row.end_section)
    return part
