"""Every command's help screen reads as prose in a narrow terminal: no sentence is cut mid-line."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from rich.cells import cell_len
from typer.testing import CliRunner

from bankgrowth.cli.main import app

WIDTH = 60
BOX = ("│", "╭", "╰", "┃", "┏", "┗")


def _commands(command: Any, path: list[str]) -> Iterator[list[str]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, [*path, name])


COMMANDS = list(_commands(typer.main.get_command(app), []))


def _early_breaks(screen: str) -> list[str]:
    """Prose lines (outside the option boxes) that end although the next line's first word fit."""

    def prose(line: str) -> bool:
        return bool(line.strip()) and not line.lstrip().startswith((*BOX, "Usage:"))

    lines = [line.rstrip() for line in screen.splitlines()]
    return [
        f"{line.strip()!r} / {after.strip()!r}"
        for line, after in itertools.pairwise(lines)
        if prose(line) and prose(after) and cell_len(line) + 1 + cell_len(after.split()[0]) <= WIDTH - 1
    ]


def test_every_command_has_a_help_screen() -> None:
    assert len(COMMANDS) > 70 and ["insight", "run"] in COMMANDS and ["campaigns", "dnc", "add"] in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "bankgrowth" for p in COMMANDS])
def test_help_paragraphs_are_wrapped_to_the_terminal(path: list[str]) -> None:
    # when
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH), "TERMINAL_WIDTH": str(WIDTH)})
    # then
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert _early_breaks(result.output) == []
