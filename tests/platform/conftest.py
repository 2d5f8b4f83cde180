from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bankgrowth.operational import db


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite operational store."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'operational.sqlite'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()
