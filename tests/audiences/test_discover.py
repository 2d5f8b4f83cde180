"""Lookalike expansion and clustering over the small bank's tags."""

from __future__ import annotations

import random

from sqlalchemy.orm import Session

from bankgrowth.audiences import service as audiences
from bankgrowth.audiences.schemas import ListUpload
from tests.audiences.conftest import Bank


def test_a_lookalike_of_super_users_recovers_held_out_members_and_can_be_saved(bank: Bank) -> None:
    # given
    supers = bank.ids(lambda r: r["stage"] == "super")
    # when
    with Session(bank.store, expire_on_commit=False) as s, s.begin():
        found = audiences.lookalike(
            s, bank.con, principal=bank.principal(s), code="core.super_users", target=300, save_as="t.like_supers"
        )
        saved = audiences.get_or_raise(s, principal=bank.principal(s), code="t.like_supers")
    # then: the held-out seed members are found far above chance; the chosen are new customers
    assert found.seed == len(supers) and found.target == 300 == len(found.customers)
    assert found.holdout_auc > 0.8 and found.lift > 2, found
    assert not set(found.customers) & supers
    assert found.scores == sorted(found.scores, reverse=True)
    assert saved.kind == "list" and found.top_features


def test_a_lookalike_of_a_random_seed_reports_that_it_finds_nothing(bank: Bank) -> None:
    # given: 150 customers drawn at random: there is nothing to resemble
    drawn = random.Random(5).sample(sorted(bank.ids(lambda r: True)), 150)
    with Session(bank.store, expire_on_commit=False) as s, s.begin():
        audiences.upload(
            s,
            bank.con,
            principal=bank.principal(s),
            data=ListUpload(code="t.random", name_zh="随机", name_en="Random", customer_ids=[str(i) for i in drawn]),
        )
        # when
        found = audiences.lookalike(s, bank.con, principal=bank.principal(s), code="t.random", target=150)
    # then: the quality report says so, instead of presenting noise as a segment
    assert found.holdout_auc < 0.7 and found.lift < 2, found


def test_clusters_cover_everyone_once_and_say_what_sets_each_apart(bank: Bank) -> None:
    # when
    with Session(bank.store, expire_on_commit=False) as s:
        first = audiences.clusters(s, bank.con, principal=bank.principal(s), k=4)
        again = audiences.clusters(s, bank.con, principal=bank.principal(s), k=4)
        branch = audiences.clusters(s, bank.con, principal=bank.principal(s, "B01"), k=3)
    # then
    assert first.customers == len(bank.tags) == sum(c.customers for c in first.clusters)
    assert abs(sum(c.share for c in first.clusters) - 1) < 1e-3
    assert [c.customers for c in first.clusters] == [c.customers for c in again.clusters]  # reproducible
    assert all(c.distinctive and c.suggested_name and c.stages for c in first.clusters)
    assert {c.suggested_name for c in first.clusters} != {first.clusters[0].suggested_name}
    assert branch.customers == len(bank.ids(lambda r: str(r["branch_id"]).startswith("B01")))
