"""Validated ingest of CSV and Parquet files into the warehouse.

A file goes through three stages:

1. **Structure** — readable, the right encoding, the expected columns. A file that fails here is
   refused whole with one message (:class:`IngestFileError`); nothing of it is loaded.
2. **Rows** — each row is parsed and checked on its own, batch by batch and vectorised in Arrow:
   types, required fields, allowed values, ranges, patterns, cross-field order. A bad row goes to
   the quarantine with its file, line, field, what was expected and what was found; the good rows
   go on to a staging table.
3. **Set rules** — checked in the warehouse with Ibis expressions over the staging table:
   duplicate ids inside the file, ids already loaded (an identical row is a skipped duplicate, a
   different row under the same id is quarantined as a conflict), and referential integrity
   (unknown customer, card, branch, referrer; a card that belongs to another customer).

Every row read is accounted for: ``read = loaded + quarantined + duplicates skipped``. A file whose
fingerprint was loaded before is not read again, so loading the same file twice changes nothing.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from zoneinfo import ZoneInfo

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bankgrowth.warehouse import schema
from bankgrowth.warehouse.engine import append_arrow, insert
from bankgrowth.warehouse.schema import Column, TableSpec

if TYPE_CHECKING:
    from ibis.backends import BaseBackend

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(done, total)`` in bytes (CSV) or rows (Parquet)."""

batch_bytes = 16 << 20  # CSV block size; module-level so tests can force many batches
TRUE_WORDS = ("true", "t", "1", "yes", "y")
FALSE_WORDS = ("false", "f", "0", "no", "n")
_INT_RE = r"^\s*[+-]?[0-9]{1,18}\s*$"
_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TS_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?$"
_OFFSET_RE = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
EARLIEST = datetime(1950, 1, 1, tzinfo=UTC)


class IngestFileError(Exception):
    """A whole file cannot be read as the table it claims to be. The message says why."""


@dataclass
class Problem:
    line: int
    field: str
    expected: str
    found: str
    record: str = ""


@dataclass
class LoadReport:
    """What happened to one file. ``read == loaded + quarantined + duplicates``."""

    file: str
    table: str
    load_id: str
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0
    already_loaded: bool = False
    problems: list[Problem] = field(default_factory=list)  # the first few, for display
    problem_count: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def reconciles(self) -> bool:
        return self.read == self.loaded + self.quarantined + self.duplicates


# --------------------------------------------------------------------------------------------
# Reading files


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _CountingReader:
    """A file object that remembers how many bytes pyarrow has pulled, for the progress bar."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.pos = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.pos += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True
        self.fh.close()


@dataclass
class _Batch:
    table: pa.Table  # all columns as read (strings for CSV)
    lines: np.ndarray  # physical line number (CSV) or row number (Parquet) of each row
    done: int
    total: int
    rejected: list[Problem] = field(default_factory=list)  # lines the reader could not split


def _check_header(path: Path, spec: TableSpec, found: Sequence[str]) -> None:
    expected = spec.column_names
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing column(s) " + ", ".join(missing))
        if extra:
            parts.append("unexpected column(s) " + ", ".join(extra))
        raise IngestFileError(
            f"{path}: {'; '.join(parts)} for table {spec.name}; expected columns: {', '.join(expected)}"
        )
    dup = sorted({c for c in found if list(found).count(c) > 1})
    if dup:
        raise IngestFileError(f"{path}: column(s) {', '.join(dup)} appear more than once in the header")


def _read_csv(path: Path, spec: TableSpec, encoding: str) -> Iterator[_Batch]:
    size = path.stat().st_size
    if size == 0:
        raise IngestFileError(f"{path}: the file is empty (0 bytes); expected a header line and rows")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise IngestFileError(
            f"{path}: unknown text encoding {encoding!r}; expected one such as utf-8 or gb18030"
        ) from None
    with path.open("rb") as probe:
        head = probe.read(4096)
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header_text = first_line.decode("utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding)
    except UnicodeDecodeError as exc:
        raise IngestFileError(_encoding_message(path, encoding, 1)) from exc
    header = [h.strip().strip('"') for h in header_text.split(",")]
    _check_header(path, spec, header)
    ncols = len(header)
    invalid: list[Problem] = []

    def on_invalid(row: Any) -> str:
        text = row.text or ""
        hint = " (the line is cut short: is the file truncated?)" if row.actual_columns < ncols else ""
        invalid.append(
            Problem(
                line=int(row.number) if row.number is not None else -1,
                field="(row)",
                expected=f"{ncols} comma-separated fields",
                found=f"{row.actual_columns} field(s){hint}",
                record=text[:500],
            )
        )
        return "skip"

    fh = _CountingReader(path.open("rb"))
    reader_encoding = "utf8" if encoding.lower() in ("utf-8", "utf8", "utf-8-sig") else encoding
    try:
        reader = pacsv.open_csv(
            fh,
            read_options=pacsv.ReadOptions(block_size=batch_bytes, use_threads=False, encoding=reader_encoding),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        fh.close()
        raise IngestFileError(_arrow_message(path, exc, encoding, 1)) from exc
    next_line = 2  # line 1 is the header
    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise IngestFileError(_arrow_message(path, exc, encoding, next_line)) from exc
            # Valid rows take every physical line the invalid-row handler did not claim. The reader
            # parses ahead, so the handler may already have claimed lines of the next batch: keep
            # those pending until a batch reaches them.
            skipped = sorted(p.line for p in invalid)
            lines = _assign_lines(next_line, batch.num_rows, skipped)
            if lines.size:
                next_line = int(lines[-1]) + 1
            rejected = [p for p in invalid if p.line < next_line]
            invalid[:] = [p for p in invalid if p.line >= next_line]
            yield _Batch(pa.Table.from_batches([batch]), lines, fh.pos, size, rejected)
        if invalid:  # a last block of nothing but unsplittable lines yields no batch of its own
            empty = pa.table({c: pa.array([], pa.string()) for c in header})
            yield _Batch(empty, np.empty(0, dtype=np.int64), size, size, invalid[:])
    finally:
        fh.close()


def _assign_lines(start: int, count: int, skipped: list[int]) -> np.ndarray:
    lines = np.empty(count, dtype=np.int64)
    line, i, s = start, 0, 0
    while i < count:
        while s < len(skipped) and skipped[s] < line:
            s += 1
        if s < len(skipped) and skipped[s] == line:
            line += 1
            continue
        # a run up to the next skipped line is contiguous
        stop = skipped[s] if s < len(skipped) else line + (count - i)
        run = min(stop - line, count - i)
        lines[i : i + run] = np.arange(line, line + run)
        i += run
        line += run
    return lines


def _read_parquet(path: Path, spec: TableSpec) -> Iterator[_Batch]:
    if path.stat().st_size == 0:
        raise IngestFileError(f"{path}: the file is empty (0 bytes)")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestFileError(
            f"{path}: not a readable Parquet file ({_first_line(exc)}); is it truncated or another format?"
        ) from exc
    _check_header(path, spec, pf.schema_arrow.names)
    total = pf.metadata.num_rows
    done = 0
    try:
        for batch in pf.iter_batches(batch_size=1_000_000, columns=spec.column_names):
            lines = np.arange(done + 1, done + batch.num_rows + 1, dtype=np.int64)
            done += batch.num_rows
            yield _Batch(pa.Table.from_batches([batch]), lines, done, total)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestFileError(f"{path}: unreadable after row {done} ({_first_line(exc)}); is it truncated?") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _encoding_message(path: Path, encoding: str, line: int) -> str:
    return (
        f"{path}: not valid {encoding} text (near line {line}). If the file was exported as GBK/GB18030, "
        f"load it with --encoding gb18030; otherwise re-save it as UTF-8"
    )


def _arrow_message(path: Path, exc: pa.ArrowInvalid, encoding: str, line: int) -> str:
    text = str(exc)
    if "UTF8" in text or "UTF-8" in text or "decode" in text.lower():
        return _encoding_message(path, encoding, line)
    if "Empty CSV file" in text:
        return f"{path}: the file is empty; expected a header line and rows"
    return f"{path}: cannot be read as CSV near line {line} ({_first_line(exc)})"


# --------------------------------------------------------------------------------------------
# Row rules (vectorised)


@dataclass
class _Checked:
    arrays: dict[str, pa.Array]
    bad: np.ndarray  # bool per row
    problems: list[tuple[int, str, str, str]]  # (row index, field, expected, found)


def _as_str(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return pc.utf8_trim_whitespace(arr.cast(pa.string()))
    return arr.cast(pa.string())


def _found(raw: pa.Array, idx: np.ndarray) -> list[str]:
    vals = raw.take(pa.array(idx)).to_pylist()
    return ["(empty)" if v is None or v == "" else str(v)[:200] for v in vals]


def _parse_column(col: Column, raw: pa.Array, tz: ZoneInfo) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Return (typed values, missing mask, invalid mask)."""
    n = len(raw)
    typed_input = not (
        pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type) or pa.types.is_dictionary(raw.type)
    )
    if typed_input:
        missing = raw.is_null().to_numpy(zero_copy_only=False)
        values, invalid = _coerce_typed(col, raw, tz)
        return values, missing, invalid & ~missing
    text = _as_str(raw)
    empty = pc.or_kleene(pc.is_null(text), pc.equal(text, "")).fill_null(True)
    missing = empty.to_numpy(zero_copy_only=False)
    safe = pc.if_else(empty, pa.scalar(None, pa.string()), text)
    if col.kind == "string":
        return safe, missing, np.zeros(n, bool)
    if col.kind == "int":
        ok = pc.match_substring_regex(safe, _INT_RE).fill_null(False)
        good = pc.if_else(ok, safe, pa.scalar(None, pa.string()))
        values = pc.cast(pc.utf8_trim_whitespace(good), pa.int64())
        return values, missing, ~ok.to_numpy(zero_copy_only=False) & ~missing
    if col.kind == "bool":
        lower = pc.utf8_lower(safe)
        is_true = pc.is_in(lower, pa.array(TRUE_WORDS)).fill_null(False)
        is_false = pc.is_in(lower, pa.array(FALSE_WORDS)).fill_null(False)
        values = pc.if_else(is_true, True, pc.if_else(is_false, False, pa.scalar(None, pa.bool_())))
        ok = pc.or_(is_true, is_false).to_numpy(zero_copy_only=False)
        return values, missing, ~ok & ~missing
    if col.kind == "date":
        ok = pc.match_substring_regex(safe, _DATE_RE).fill_null(False)
        parsed = pc.strptime(
            pc.if_else(ok, safe, pa.scalar(None, pa.string())), format="%Y-%m-%d", unit="s", error_is_null=True
        )
        values = parsed.cast(pa.date32())
        invalid = values.is_null().to_numpy(zero_copy_only=False) & ~missing
        return values, missing, invalid
    # timestamp: ISO 8601; a value without an offset is local time in the configured zone
    import pandas as pd  # only here and for naive typed timestamps: pandas is slow to import

    ok = pc.match_substring_regex(safe, _TS_RE).fill_null(False).to_numpy(zero_copy_only=False)
    series = pd.Series(safe.to_pandas(), dtype=object)
    out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
    has_offset = pc.match_substring_regex(safe, _OFFSET_RE).fill_null(False).to_numpy(zero_copy_only=False)
    with_off = ok & has_offset
    naive = ok & ~has_offset
    if with_off.any():
        out[with_off] = pd.to_datetime(series[with_off], format="ISO8601", utc=True, errors="coerce").astype(
            "datetime64[us, UTC]"
        )
    if naive.any():
        local = pd.to_datetime(series[naive], format="ISO8601", errors="coerce")
        out[naive] = (
            local.dt.tz_localize(tz, nonexistent="NaT", ambiguous="NaT")
            .dt.tz_convert("UTC")
            .astype("datetime64[us, UTC]")
        )
    values = pa.array(out, type=pa.timestamp("us", tz="UTC"))
    invalid = values.is_null().to_numpy(zero_copy_only=False) & ~missing
    return values, missing, invalid


def _coerce_typed(col: Column, raw: pa.Array, tz: ZoneInfo) -> tuple[pa.Array, np.ndarray]:
    """Typed (Parquet) input: accept compatible types, reject the rest row by row."""
    n = len(raw)
    t = raw.type
    target = schema._KIND_TO_ARROW[col.kind]
    try:
        if col.kind == "int" and pa.types.is_integer(t):
            return raw.cast(pa.int64()), np.zeros(n, bool)
        if col.kind == "int" and pa.types.is_floating(t):
            whole = pc.equal(raw, pc.floor(raw)).fill_null(True).to_numpy(zero_copy_only=False)
            vals = pc.if_else(pa.array(whole), raw, pa.scalar(None, t)).cast(pa.int64())
            return vals, ~whole
        if col.kind == "bool" and pa.types.is_boolean(t):
            return raw, np.zeros(n, bool)
        if col.kind == "date" and pa.types.is_date(t):
            return raw.cast(pa.date32()), np.zeros(n, bool)
        if col.kind == "date" and pa.types.is_timestamp(t):
            return raw.cast(pa.date32()), np.zeros(n, bool)
        if col.kind == "timestamp" and pa.types.is_timestamp(t):
            if t.tz is None:  # naive: local time in the configured zone
                import pandas as pd

                local = pd.Series(raw.to_pandas()).dt.tz_localize(tz, nonexistent="NaT", ambiguous="NaT")
                vals = pa.array(local.dt.tz_convert("UTC"), type=target)
                return vals, (
                    vals.is_null().to_numpy(zero_copy_only=False) & ~raw.is_null().to_numpy(zero_copy_only=False)
                )
            return raw.cast(target), np.zeros(n, bool)
        if col.kind == "timestamp" and pa.types.is_date(t):
            return raw.cast(pa.timestamp("us")).cast(target), np.zeros(n, bool)
        if col.kind == "string":
            return raw.cast(pa.string()), np.zeros(n, bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return pa.nulls(n, target), np.ones(n, bool)


def _check_rows(spec: TableSpec, table: pa.Table, tz: ZoneInfo, now: datetime) -> _Checked:
    n = table.num_rows
    bad = np.zeros(n, bool)
    problems: list[tuple[int, str, str, str]] = []
    arrays: dict[str, pa.Array] = {}

    def flag(mask: np.ndarray, name: str, expected: str, raw: pa.Array) -> None:
        nonlocal bad
        idx = np.flatnonzero(mask)
        if idx.size:
            bad |= mask
            for i, f in zip(idx, _found(raw, idx), strict=True):
                problems.append((int(i), name, expected, f))

    for col in spec.columns:
        raw = table.column(col.name).combine_chunks()
        values, missing, invalid = _parse_column(col, raw, tz)
        if not col.nullable:
            flag(missing, col.name, f"a value ({col.expected})", raw)
        flag(invalid, col.name, col.expected, raw)
        valid_val = ~missing & ~invalid
        if col.allowed is not None:
            ok = pc.is_in(values, pa.array(col.allowed)).fill_null(False).to_numpy(zero_copy_only=False)
            flag(valid_val & ~ok, col.name, col.expected, raw)
        if col.pattern is not None:
            ok = pc.match_substring_regex(values, col.pattern).fill_null(False).to_numpy(zero_copy_only=False)
            flag(valid_val & ~ok, col.name, col.expected, raw)
        if col.kind == "int" and (col.min is not None or col.max is not None):
            v = values.fill_null(col.min if col.min is not None else 0).to_numpy(zero_copy_only=False)
            out = np.zeros(n, bool)
            if col.min is not None:
                out |= v < col.min
            if col.max is not None:
                out |= v > col.max
            flag(valid_val & out, col.name, col.expected, raw)
        if col.kind in ("date", "timestamp"):
            lo: Any = EARLIEST if col.kind == "timestamp" else EARLIEST.date()
            hi: Any = now + timedelta(days=1) if col.kind == "timestamp" else (now + timedelta(days=1)).date()
            in_range = pc.and_(
                pc.greater_equal(values, pa.scalar(lo, values.type)), pc.less_equal(values, pa.scalar(hi, values.type))
            )
            out = ~in_range.fill_null(True).to_numpy(zero_copy_only=False)
            flag(valid_val & out, col.name, f"{col.expected} between {lo:%Y-%m-%d} and today", raw)
        arrays[col.name] = values
    for rule in spec.ordered:
        before = pc.less(arrays[rule.later], arrays[rule.earlier]).fill_null(False).to_numpy(zero_copy_only=False)
        flag(
            before & ~bad, rule.later, f"empty or not before {rule.earlier}", table.column(rule.later).combine_chunks()
        )
    return _Checked(arrays, bad, problems)


# --------------------------------------------------------------------------------------------
# Loading


def load_file(
    con: BaseBackend,
    path: Path,
    *,
    table: str | None = None,
    encoding: str = "utf-8",
    timezone: str = "Asia/Shanghai",
    progress: ProgressFn | None = None,
    keep_problems: int = 20,
    spec: TableSpec | None = None,
    into: str | None = None,
    source: str | None = None,
) -> LoadReport:
    """Validate ``path`` and load its good rows into the canonical ``table``.

    Other data validated the same way (a bank's imported tag, say) passes its own ``spec`` and,
    to load into a fresh table rather than the spec's, ``into``; such a load is never skipped as
    a file already loaded. ``source`` is what the report, its messages and the warehouse's records
    call the file when ``path`` is only where it was put (the temporary copy of an upload)."""
    path = Path(path)
    try:
        return _load_file(
            con,
            path,
            source or str(path),
            table=table,
            encoding=encoding,
            timezone=timezone,
            progress=progress,
            keep_problems=keep_problems,
            spec=spec,
            into=into,
        )
    except IngestFileError as exc:  # the readers' messages name the path they were given
        if source is None:
            raise
        raise IngestFileError(str(exc).replace(str(path), source)) from None


def _load_file(
    con: BaseBackend,
    path: Path,
    name: str,
    *,
    table: str | None,
    encoding: str,
    timezone: str,
    progress: ProgressFn | None,
    keep_problems: int,
    spec: TableSpec | None,
    into: str | None,
) -> LoadReport:
    if not path.exists():
        raise IngestFileError(f"{path}: no such file")
    spec = spec or _spec_for(path, table)
    fmt = _format_of(path)
    fingerprint = _fingerprint(path)
    load_id = uuid.uuid4().hex[:12]
    report = LoadReport(file=name, table=spec.name, load_id=load_id)
    loads = con.table(schema.LOADS)
    seen = loads.filter((loads.fingerprint == fingerprint) & (loads.table_name == spec.name)).limit(1).to_pyarrow()
    if seen.num_rows and into is None:
        prior = seen.to_pylist()[0]
        report.already_loaded = True
        report.load_id = prior["load_id"]
        report.warnings.append(f"identical file already loaded as load {prior['load_id']}; nothing changed")
        return report

    tz = ZoneInfo(timezone)
    now = datetime.now(UTC)
    stage = f"_stage_{spec.name}_{load_id}"
    stage_schema = ibis.schema({**dict(spec.ibis_schema.items()), "_line": "int64"})
    # A regular table, dropped at the end: DuckDB keeps temporary tables in memory, which measured
    # slower and 50% larger at 50M rows than a table its buffer manager can evict.
    con.create_table(stage, schema=stage_schema)
    quarantine: list[dict[str, object]] = []

    def quarantine_problems(items: Sequence[Problem]) -> None:
        for p in items:
            quarantine.append(
                {
                    "load_id": load_id,
                    "table_name": spec.name,
                    "file": name,
                    "line": p.line,
                    "field": p.field,
                    "expected": p.expected,
                    "found": p.found,
                    "record": p.record,
                }
            )
            if len(report.problems) < keep_problems:
                report.problems.append(p)
            report.problem_count += 1
        if len(quarantine) >= 100_000:
            _flush_quarantine(con, quarantine)

    try:
        batches = _read_csv(path, spec, encoding) if fmt == "csv" else _read_parquet(path, spec)
        bad_lines: set[int] = set()
        for batch in batches:
            checked = _check_rows(spec, batch.table, tz, now)
            if batch.rejected:
                report.read += len(batch.rejected)
                bad_lines.update(p.line for p in batch.rejected)
                quarantine_problems(batch.rejected)
            report.read += batch.table.num_rows
            if checked.problems:
                records = _records(batch.table, sorted({i for i, *_ in checked.problems}))
                quarantine_problems(
                    [Problem(int(batch.lines[i]), f, e, found, records[i]) for i, f, e, found in checked.problems]
                )
                bad_lines.update(int(batch.lines[i]) for i, *_ in checked.problems)
            good = np.flatnonzero(~checked.bad)
            if good.size:
                cols = {name: arr.take(pa.array(good)) for name, arr in checked.arrays.items()}
                cols["_line"] = pa.array(batch.lines[good])
                append_arrow(
                    con, stage, pa.table(cols, schema=pa.schema([*spec.arrow_schema, pa.field("_line", pa.int64())]))
                )
            if progress is not None:
                progress(batch.done, batch.total)
        if fmt == "csv":
            _truncation_warning(path, name, report)
        dup_lines: set[int] = set()
        _apply_set_rules(con, spec, stage, quarantine_problems, bad_lines, dup_lines, report, into or spec.name)
        report.duplicates = len(dup_lines)
        report.quarantined = len(bad_lines - dup_lines)
        _flush_quarantine(con, quarantine)
        append_arrow(
            con,
            schema.LOADS,
            pa.table(
                {
                    "load_id": [load_id],
                    "table_name": [spec.name],
                    "file": [name],
                    "fingerprint": [fingerprint],
                    "rows_read": [report.read],
                    "rows_loaded": [report.loaded],
                    "rows_quarantined": [report.quarantined],
                    "duplicates_skipped": [report.duplicates],
                    "loaded_at": pa.array([now], pa.timestamp("us", tz="UTC")),
                }
            ),
        )
    finally:
        con.drop_table(stage, force=True)
    return report


def _records(table: pa.Table, rows: list[int]) -> dict[int, str]:
    if not rows:
        return {}
    sub = table.take(pa.array(rows, pa.int64())).to_pylist()
    return {i: json.dumps(r, ensure_ascii=False, default=str)[:1000] for i, r in zip(rows, sub, strict=True)}


def _flush_quarantine(con: BaseBackend, rows: list[dict[str, object]]) -> None:
    if rows:
        append_arrow(con, schema.QUARANTINE, pa.Table.from_pylist(rows, schema=schema.QUARANTINE_SCHEMA.to_pyarrow()))
        rows.clear()


def _truncation_warning(path: Path, name: str, report: LoadReport) -> None:
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - 1))
        last = fh.read(1)
    cut = [p.line for p in report.problems if p.field == "(row)" and "cut short" in p.found]
    if last not in (b"\n", b"\r") and cut:
        report.warnings.append(
            f"{name}: line {max(cut)} has too few fields and the file has no final line end; the file looks truncated"
        )


def _apply_set_rules(
    con: BaseBackend,
    spec: TableSpec,
    stage_name: str,
    quarantine: Callable[[Sequence[Problem]], None],
    bad_lines: set[int],
    dup_lines: set[int],
    report: LoadReport,
    into: str,
) -> None:
    """Duplicates, conflicts and references, decided in the warehouse; then the insert into ``into``."""
    pk = spec.primary_key
    stage = con.table(stage_name)
    target = con.table(into)
    data_cols = spec.column_names
    rejected: list[pa.Table] = []  # (_line, reason columns) of rows not to insert

    def reject(expr: ibis.Table, field_name: str, expected: str, found: ibis.Value, duplicate: bool = False) -> None:
        rows = expr.select(_line=expr._line, found=found.cast("string")).to_pyarrow()
        if rows.num_rows == 0:
            return
        rejected.append(rows.select(["_line"]))
        lines = rows.column("_line").to_pylist()
        if duplicate:
            dup_lines.update(lines)
            return
        bad_lines.update(lines)
        founds = rows.column("found").to_pylist()
        quarantine([Problem(ln, field_name, expected, str(f)) for ln, f in zip(lines, founds, strict=True)])

    # 1. the same id twice in this file: the first line wins; a later identical row is a duplicate,
    #    a later different row is a conflict.
    counts = stage.group_by(pk).aggregate(_n=ibis._.count(), _first=stage._line.min())
    repeated = counts.filter(counts._n > 1)
    later = stage.inner_join(repeated, pk).filter(lambda t: t._line > t._first)
    if later.count().to_pyarrow().as_py():
        firsts = stage.inner_join(repeated, [pk, stage._line == repeated._first]).select(*data_cols)
        first_r = firsts.rename({f"_f_{c}": c for c in data_cols})
        joined = later.inner_join(first_r, later[pk] == first_r[f"_f_{pk}"])
        cond = _all_identical(joined, data_cols)
        reject(joined.filter(cond), pk, f"a unique {pk}", joined[pk], duplicate=True)
        reject(
            joined.filter(~cond),
            pk,
            f"a unique {pk}",
            joined[pk].cast("string")
            + ibis.literal(", first at line ")
            + joined._first.cast("string")
            + ibis.literal(" with other values"),
        )
    # 2. ids already in the warehouse: identical → duplicate; different → conflict
    existing = stage.semi_join(target, pk)
    if existing.count().to_pyarrow().as_py():
        tgt = target.select(*data_cols).rename({f"_t_{c}": c for c in data_cols})
        joined = stage.inner_join(tgt, stage[pk] == tgt[f"_t_{pk}"])
        cond = _all_identical(joined, data_cols, prefix="_t_")
        reject(joined.filter(cond), pk, f"a new {pk}", joined[pk], duplicate=True)
        reject(
            joined.filter(~cond),
            pk,
            f"a new {pk}, or exactly the row already loaded under it",
            joined[pk].cast("string") + ibis.literal(", already loaded with other values"),
        )
    # 3. references
    for fk in spec.foreign_keys:
        ref = con.table(fk.table)
        known = ref.select(_k=ref[fk.ref_column])
        if fk.table == spec.name:  # self reference: earlier loads or this file
            known = known.union(stage.select(_k=stage[fk.ref_column]))
        orphans = stage.filter(stage[fk.column].notnull()).anti_join(known, stage[fk.column] == known._k)
        reject(orphans, fk.column, f"a {fk.ref_column} that exists in {fk.table}", orphans[fk.column])
    for column, ref_table in spec.same_customer_as:
        ref = con.table(ref_table)
        owners = ref.select(_ref=ref[column], _owner=ref.customer_id)
        j = stage.inner_join(owners, stage[column] == owners._ref)
        wrong = j.filter(j._owner != j.customer_id)
        reject(
            wrong,
            column,
            f"a {column} that belongs to customer_id",
            wrong[column].cast("string") + ibis.literal(" belongs to customer ") + wrong._owner.cast("string"),
        )
    # 4. everything not rejected goes in
    good = stage
    if rejected:
        drop = ibis.memtable(pa.concat_tables(rejected).combine_chunks())
        good = stage.anti_join(drop, stage._line == drop._line)
    report.loaded = int(good.count().to_pyarrow().as_py())
    insert(con, into, good.select(*data_cols))


def _all_identical(t: ibis.Table, cols: list[str], prefix: str = "_f_") -> ibis.ir.BooleanValue:
    out: ibis.ir.BooleanValue | None = None
    for c in cols:
        cond = t[c].identical_to(t[prefix + c])
        out = cond if out is None else out & cond
    assert out is not None
    return out


def _spec_for(path: Path, table: str | None) -> TableSpec:
    if table is not None:
        if table not in schema.TABLES:
            raise IngestFileError(f"{path}: unknown table {table!r}; expected one of {', '.join(schema.TABLES)}")
        return schema.TABLES[table]
    spec = schema.table_for_file_name(path.name)
    if spec is None:
        raise IngestFileError(
            f"{path}: cannot tell which table this file holds from its name; name it after a table "
            f"({', '.join(schema.TABLES)}) or pass --table"
        )
    return spec


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise IngestFileError(f"{path}: unsupported file type {suffix or '(none)'}; expected .csv or .parquet")


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files named, and the CSV/Parquet files inside named directories, in load (dependency) order."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in (".csv", ".parquet", ".pq")))
        else:
            files.append(p)

    def order(p: Path) -> tuple[int, str]:
        spec = schema.table_for_file_name(p.name)
        return (spec.load_order if spec else 99, p.name)

    return sorted(files, key=order)
