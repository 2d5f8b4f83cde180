"""Computed stages agree with the simulator's hidden truth where the data can show it."""

from __future__ import annotations

from datetime import date

from bankgrowth.evaluation.lifecycle import lifecycle_agreement
from bankgrowth.insight import service
from tests.conftest import warehouse_copy


def test_stages_agree_with_the_truth(small_bank, loaded_bank, tmp_path) -> None:
    # given
    with warehouse_copy(loaded_bank, tmp_path) as (con, settings):
        service.run(con, settings, as_of=date(2026, 10, 31))
        # when
        agreement = lifecycle_agreement(con, small_bank.truth_dir / "customer_truth.parquet")
    # then: exact where the data is conclusive, high overall
    rates = {r.truth_state: r.rate for r in agreement.rows}
    assert rates["never_bound"] == rates["never_active"] == rates["removed every binding"] == 1.0
    assert rates["active"] > 0.9
    assert agreement.overall > 0.9
    assert sum(r.customers for r in agreement.rows) == small_bank.rows["customers"]
