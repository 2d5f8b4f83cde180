"""A campaign's true effect, from the simulator's record of what each treatment did.

The advance writes, per exposed customer, the expected outcome with and without the treatment
(``truth/effects_*.parquet``). The true intent-to-treat effect of an arm is the mean, over every
customer assigned to it, of the difference — zero for those the campaign never reached (budget
ran out, message suppressed, no live binding). It is what the measured lift against the control
group estimates, so the demo prints the two side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bankgrowth.campaigns import store
from bankgrowth.campaigns.assignment import CONTROL

if TYPE_CHECKING:
    from ibis.backends import BaseBackend


@dataclass(frozen=True)
class TrueEffect:
    arm: str
    n: int
    exposed: int
    conversion: float  # percentage points as a fraction: p1 - p0, averaged over the arm
    transactions: float  # per customer
    amount_yuan: Decimal  # per customer


def true_effects(con: BaseBackend, truth_dir: Path, *, campaign_id: int, code: str) -> list[TrueEffect]:
    files = sorted(truth_dir.glob("effects_*.parquet"))
    diffs: dict[int, tuple[float, float, float]] = {}
    for path in files:
        t = pq.read_table(path)
        t = t.filter(pc.equal(t.column("source"), code))
        ids = t.column("customer_id").to_numpy()
        conv = t.column("p_convert_1").to_numpy() - t.column("p_convert_0").to_numpy()
        txns = t.column("expected_txns_1").to_numpy() - t.column("expected_txns_0").to_numpy()
        amount = t.column("expected_amount_1").to_numpy() - t.column("expected_amount_0").to_numpy()
        for i, c, x, a in zip(ids.tolist(), conv, txns, amount, strict=True):
            old = diffs.get(i, (0.0, 0.0, 0.0))
            diffs[i] = (old[0] + float(c), old[1] + float(x), old[2] + float(a))
    a = store.assignments(con, campaign_id).select("customer_id", "arm").to_pyarrow()
    arms: dict[str, list[int]] = {}
    for cid, arm in zip(a.column("customer_id").to_pylist(), a.column("arm").to_pylist(), strict=True):
        if arm != CONTROL:
            arms.setdefault(arm, []).append(cid)
    out = []
    for arm, members in sorted(arms.items()):
        values = np.array([diffs.get(m, (0.0, 0.0, 0.0)) for m in members]) if members else np.zeros((0, 3))
        mean = values.mean(axis=0) if len(values) else np.zeros(3)
        out.append(
            TrueEffect(
                arm=arm,
                n=len(members),
                exposed=sum(1 for m in members if m in diffs),
                conversion=float(mean[0]),
                transactions=float(mean[1]),
                amount_yuan=(Decimal(str(round(float(mean[2])))) / 100).quantize(Decimal("0.01")),
            )
        )
    return out
