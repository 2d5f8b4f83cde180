"""What every command shares: the consoles, settings, stores, the caller, and one-line errors."""

from __future__ import annotations

import getpass
import inspect
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bankgrowth.config import Settings
from bankgrowth.errors import BankgrowthError

if TYPE_CHECKING:
    from ibis.backends import BaseBackend
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from bankgrowth.platform.access import Principal

# A command imports the services it calls when it runs (the engines, SQLAlchemy, SciPy and pandas
# take seconds to import), so that `--help` and a quick command answer at once.

M = TypeVar("M", bound=BaseModel)

console = Console()
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 120  # logs and pipes: wide enough for the summary tables
err_console = Console(stderr=True)


def known_errors() -> tuple[type[BaseException], ...]:
    """The errors a person can act on: shown as one red line, without a traceback."""
    from bankgrowth.warehouse.engine import WarehouseError
    from bankgrowth.warehouse.ingest import IngestFileError

    return (
        IngestFileError,
        WarehouseError,
        BankgrowthError,
        ValueError,
        ValidationError,
        FileNotFoundError,
        LookupError,
        PermissionError,
    )


def bar(*columns: ProgressColumn, transient: bool = False) -> Progress:
    """A bar on the terminal for long work, its description then ``columns``; nothing in logs and
    pipes (bars are for people, not for logs)."""
    return Progress(
        TextColumn("{task.description}"),
        *columns,
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,
    )


def progress_bar() -> Progress:
    """Work of a known number of items: how many are done and the time left."""
    return bar(BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def step_bar() -> Progress:
    """Work done in named steps of unknown length: the step, how far the engine is through the
    statement running now, and the time spent; gone when the work ends."""
    return bar(BarColumn(), TaskProgressColumn(), TimeElapsedColumn(), transient=True)


def reflow_help(app: typer.Typer) -> None:
    """Join the source's line breaks in each command's docstring, paragraph by paragraph, in
    ``app`` and the groups under it. The help screen keeps the breaks of every paragraph after the
    first, which cuts sentences mid-line in a terminal narrower than the source."""
    for info in app.registered_commands:
        text = info.help or (info.callback.__doc__ if info.callback else None)
        if text:
            info.help = "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))
    for group in app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


def fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def describe_invalid(exc: ValidationError, source: str) -> str:
    """Every problem pydantic found, one line each: where in the data, what was expected, what was found."""
    problems = exc.errors()
    lines = [f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"]
    for e in problems:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).removeprefix(".")
        found = "" if e["type"] == "missing" else f" (found {_short(e.get('input'))})"
        lines.append(f"  {where or '(the whole file)'}: {e['msg']}{found}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "…"


def read_json(path: Path) -> Any:
    """A JSON file's contents; a file that is missing or not JSON is one line naming where."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise fail(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise fail(f"{path}: line {exc.lineno}, column {exc.colno}: not JSON: {exc.msg}") from None


def from_json_file(path: Path, model: type[M]) -> M:
    """A JSON file read as ``model``; a problem names the file and the place in it."""
    data = read_json(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise fail(describe_invalid(exc, str(path))) from None


def settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = f"BANKGROWTH_{str(first['loc'][0]).upper()}: " if first["loc"] else ""
        raise fail(f"configuration: {where}{first['msg']}") from None


@contextmanager
def warehouse(s: Settings) -> Iterator[BaseBackend]:
    from bankgrowth.warehouse import engine

    def waiting(message: str) -> None:
        err_console.print(f"[yellow]{message}[/]", highlight=False, soft_wrap=True)

    try:
        with engine.open_warehouse(s, on_wait=waiting) as con:
            yield con
    except engine.WarehouseError as exc:
        raise fail(str(exc)) from None


@contextmanager
def store(s: Settings, *, migrated: bool = True) -> Iterator[Engine]:
    """The operational store; by default it must be at the code's schema revision.

    An empty store is created on first use; a store at an older revision is left for an explicit
    `bankgrowth db upgrade`, since migrating existing data is a deliberate step."""
    from bankgrowth.operational import db

    with db.open_store(s.resolved_operational_url) as eng:
        if migrated:
            if db.current_revision(eng) is None:
                db.upgrade(eng)
            db.require_current(eng)
        yield eng


@contextmanager
def transaction(s: Settings) -> Iterator[Session]:
    """One operational-store transaction: committed when the block ends, rolled back on error."""
    from sqlalchemy.orm import Session

    with store(s) as eng, Session(eng, expire_on_commit=False) as session, session.begin():
        yield session


def cli_source() -> str:
    return f"cli:{getpass.getuser()}"


def principal(session: Session, org: str | None) -> Principal:
    """The CLI acts as the system at HQ, or within ``org``'s subtree when ``--org`` is given."""
    from bankgrowth.platform import service as platform_service

    return platform_service.system_principal(session, source=cli_source(), org_id=org)
