"""A rights catalog kept as a file (``rights/demo_catalog.json`` is one): its rights, budget pools
and savings cards are created when missing and left as they are when present, so installing the
same file again changes nothing. An entry that exists with other values is reported, not changed:
a right or a pool may already have been granted from, and its terms are part of that history.

One call is one transaction: an entry that cannot be created (an org outside the caller's scope,
a card whose bundle names an unknown right) fails the whole install, named by its place in the catalog.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from importlib import resources
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from bankgrowth.errors import BankgrowthError
from bankgrowth.platform import audit
from bankgrowth.platform.access import Permission, Principal
from bankgrowth.rights import savings_card
from bankgrowth.rights import service as rights_service
from bankgrowth.rights.models import CardProduct, Pool, Right
from bankgrowth.rights.schemas import Catalog


@dataclass
class Installed:
    created: list[str] = field(default_factory=list)  # "right demo.voucher5"
    kept: list[str] = field(default_factory=list)  # present with the file's values
    differing: list[str] = field(default_factory=list)  # present with other values: what differs


def demo_catalog() -> Catalog:
    """The catalog ``make demo`` installs: a ¥5 activation voucher, the savings card and their budgets."""
    text = resources.files("bankgrowth.rights").joinpath("demo_catalog.json").read_text(encoding="utf-8")
    return Catalog.model_validate(json.loads(text))


def install(session: Session, *, principal: Principal, catalog: Catalog) -> Installed:
    principal.require(Permission.WRITE)
    done = Installed()
    sections: list[tuple[str, str, type[Any], list[Any], Any]] = [
        ("rights", "right", Right, catalog.rights, rights_service.create_right),
        ("pools", "pool", Pool, catalog.pools, rights_service.create_pool),
        ("savings_cards", "savings card", CardProduct, catalog.savings_cards, savings_card.create_product),
    ]
    for section, kind, model, entries, create in sections:
        for i, entry in enumerate(entries):
            name = f"{kind} {entry.code}"
            stored = session.scalar(select(model).where(model.code == entry.code))
            if stored is None:
                try:
                    create(session, principal=principal, data=entry)
                except BankgrowthError as exc:
                    exc.en, exc.zh = f"{section}[{i}] {entry.code}: {exc.en}", f"{section}[{i}] {entry.code}：{exc.zh}"
                    exc.args = (exc.en,)
                    raise
                done.created.append(name)
                continue
            wanted_org = entry.org_id or principal.scope.org_id
            differences = _differences(stored, entry) + (
                [f"org_id is {_text(stored.org_id)} here, {_text(wanted_org)} in the catalog"]
                if stored.org_id != wanted_org
                else []
            )
            if differences:
                done.differing.append(f"{name}: " + "; ".join(differences))
            else:
                done.kept.append(name)
    # each entry created is audited as it is created; the install itself too, with what it left alone
    audit.record(
        session,
        principal=principal,
        action="rights.catalog_install",
        object_type="catalog",
        org_id=principal.scope.org_id,
        after={"created": done.created, "kept": done.kept, "differing": done.differing},
    )
    return done


def _differences(stored: Any, entry: BaseModel) -> list[str]:
    found = []
    for name, value in entry.model_dump(exclude={"org_id"}).items():
        have, want = _plain(getattr(stored, name)), _plain(value)
        if have != want:
            found.append(f"{name} is {_text(have)} here, {_text(want)} in the catalog")
    return found


def _plain(value: Any) -> Any:
    """Comparable across the store and the file: enums as their values, instants in UTC."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else repr(value)
