"""Platform services on a real SQLite store migrated by Alembic."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bankgrowth.config import Settings
from bankgrowth.errors import Invalid, NotFound
from bankgrowth.operational.registry import metadata
from bankgrowth.platform import audit, security
from bankgrowth.platform import service as platform_service
from bankgrowth.platform.access import Permission, Role
from bankgrowth.platform.schemas import UserCreate

TREE = [
    {"branch_id": "HQ", "parent_id": None, "level": "hq", "name_zh": "总行", "name_en": "Head Office"},
    {"branch_id": "B_1", "parent_id": "HQ", "level": "branch", "name_zh": "一分行", "name_en": "Branch 1"},
    {"branch_id": "B_1-S1", "parent_id": "B_1", "level": "sub_branch", "name_zh": "一支行", "name_en": "Sub 1"},
    {"branch_id": "B11", "parent_id": "HQ", "level": "branch", "name_zh": "十一分行", "name_en": "Branch 11"},
]


def test_the_migrations_create_exactly_the_models(store: Engine) -> None:
    with store.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata())
    assert diff == []


def test_the_audit_log_refuses_update_and_delete(store: Engine) -> None:
    # given
    with Session(store, expire_on_commit=False) as s, s.begin():
        system = platform_service.system_principal(s, source="test")
        audit.record(s, principal=system, action="x.y", object_type="thing", object_id=1)
    # when / then
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(IntegrityError, match="append-only"), store.begin() as conn:
            conn.execute(text(statement))
    with store.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_log")).scalar_one() == "system:test"


def test_a_subtree_scope_holds_its_descendants_only(store: Engine) -> None:
    # given: ids with LIKE wildcards in them, and a sibling whose id shares a prefix
    with Session(store, expire_on_commit=False) as s, s.begin():
        system = platform_service.system_principal(s, source="test")
        result = platform_service.sync_orgs(s, principal=system, rows=TREE)
        # when
        scope = platform_service.scope_of(s, "B_1")
        root = platform_service.scope_of(s, "HQ")
    # then
    assert sorted(result.created) == ["B11", "B_1", "B_1-S1", "HQ"]
    assert scope.org_ids == {"B_1", "B_1-S1"} and not scope.allows("B11") and not scope.allows(None)
    assert root.is_root and root.allows("B11")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([*TREE, {**TREE[1], "branch_id": "X", "parent_id": None}], "exactly one root"),
        (
            [*TREE, {**TREE[1], "branch_id": "Y", "parent_id": "Z"}, {**TREE[1], "branch_id": "Z", "parent_id": "Y"}],
            "cycle",
        ),
        ([*TREE, {**TREE[1], "branch_id": "Y", "parent_id": "NOPE"}], "NOPE is not in the tree"),
    ],
)
def test_a_broken_org_tree_is_refused_with_the_reason(store: Engine, rows, message) -> None:  # type: ignore[no-untyped-def]
    with Session(store, expire_on_commit=False) as s, s.begin():
        system = platform_service.system_principal(s, source="test")
        with pytest.raises(Invalid, match=message):
            platform_service.sync_orgs(s, principal=system, rows=rows)


def test_passwords_are_stored_as_argon2id_and_a_branch_admin_stays_in_its_branch(store: Engine) -> None:
    with Session(store, expire_on_commit=False) as s, s.begin():
        system = platform_service.system_principal(s, source="test")
        platform_service.sync_orgs(s, principal=system, rows=TREE)
        admin = platform_service.create_user(
            s,
            principal=system,
            data=UserCreate(
                username="b1_admin", display_name="x", password="long-enough-pw", org_id="B_1", roles=[Role.ADMIN]
            ),
        )
        branch_admin = platform_service._user_principal(s, admin, source="test", request_id=None)
        # when: it creates a user in its own sub-branch, then tries a sibling branch
        own = platform_service.create_user(
            s,
            principal=branch_admin,
            data=UserCreate(
                username="b1_op", display_name="y", password="long-enough-pw", org_id="B_1-S1", roles=[Role.OPERATOR]
            ),
        )
        with pytest.raises(NotFound):
            platform_service.create_user(
                s,
                principal=branch_admin,
                data=UserCreate(
                    username="b11_op", display_name="z", password="long-enough-pw", org_id="B11", roles=[Role.OPERATOR]
                ),
            )
    # then
    assert admin.password_hash.startswith("$argon2id$") and "long-enough-pw" not in admin.password_hash
    assert security.verify_password(own.password_hash, "long-enough-pw")
    assert not security.verify_password(own.password_hash, "long-enough-pX")
    assert branch_admin.can(Permission.MANAGE) and not branch_admin.can(Permission.APPROVE)


def test_production_refuses_default_or_short_secrets() -> None:
    with pytest.raises(ValidationError, match="refuses the default"):
        Settings(mode="production")
    with pytest.raises(ValidationError, match="refuses the default"):
        Settings(mode="production", secret_key="short")
    assert Settings(mode="production", secret_key="x" * 40).mode == "production"
    assert Settings().mode == "development"


def test_pseudonyms_are_stable_and_keyed() -> None:
    assert security.pseudonym(42, "k1") == security.pseudonym(42, "k1")
    assert security.pseudonym(42, "k1") != security.pseudonym(42, "k2")
    assert security.pseudonym(42, "k1") != security.pseudonym(43, "k1")
