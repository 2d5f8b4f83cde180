"""``simulate advance``: the simulated bank lives on for N more days, and customers respond to the
treatments they received from their hidden true response — so a campaign's measured lift can be
set beside the truth.

Each customer keeps the process of the history (see :mod:`bankgrowth.warehouse.simulator`): while
a binding is live and the customer is neither churned nor in a dormant spell, quick-pay
transactions arrive as a Poisson process of rate ``λ_i · √k_i`` (k live bindings) times the day's
calendar factor. No new customers, bindings or unbindings appear in an advance.

A treatment (an exposure: the customer, what they got — voucher, points, savings-card offer,
message, referral or binding reward —, when, and whether a message reached their phone) works only
if the customer notices it: with the truth's open rate of the message's channel when a message was
delivered, and with ``WALLET_NOTICE`` when a right sits in their wallet. Then, for the
``RESPONSE_DAYS`` after it:

- an active customer's rate is multiplied by ``1 + uplift`` (the truth's ``uplift_<treatment>``);
- an inactive one (never transacted, churned or dormant) is activated with probability ``uplift``
  and then transacts at ``ACTIVATED_RATE`` a day;
- a savings-card offer works only if the customer buys, i.e. their willingness to pay is at least
  ``CARD_PRICE_FEN``.

Beside the bank's new transactions, the advance writes the truth of what the treatments did:
per exposed customer, the expected counted transactions, the probability of at least one, and the
expected counted amount, with and without the treatment (counted: withdrawals excluded), over the
advanced days. A campaign's true effect is the mean of the differences over its arm.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bankgrowth.warehouse import calendar, schema
from bankgrowth.warehouse.simulator import (
    CATEGORY_AMOUNT_FACTOR,
    CATEGORY_MIX,
    CHANNELS,
    INSTITUTION_MIX,
    TREATMENTS,
    US_PER_DAY,
)

RESPONSE_DAYS = 14
WALLET_NOTICE = 0.25
ACTIVATED_RATE = 0.2
CARD_PRICE_FEN = 590
EXPOSURE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),  # e.g. the campaign's code
        ("customer_id", pa.int64()),
        ("treatment", pa.string()),  # one of simulator.TREATMENTS
        ("at", pa.timestamp("us", tz="UTC")),
        ("right_granted", pa.bool_()),
        ("message_channel", pa.string()),  # null: no message delivered
    ]
)
TRUTH_EFFECTS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("customer_id", pa.int64()),
        ("expected_txns_0", pa.float64()),
        ("expected_txns_1", pa.float64()),
        ("p_convert_0", pa.float64()),
        ("p_convert_1", pa.float64()),
        ("expected_amount_0", pa.float64()),
        ("expected_amount_1", pa.float64()),
    ]
)
# E[category factor] · E[lognormal(-0.4, 0.9)]: the mean amount of a transaction per unit of the
# customer's mean_amount (see the simulator's amounts)
_CAT_P = np.array(list(CATEGORY_MIX.values()))
_CAT_F = np.array(list(CATEGORY_AMOUNT_FACTOR.values()))
AMOUNT_FACTOR = float((_CAT_P * _CAT_F).sum() * np.exp(-0.4 + 0.9**2 / 2))


@dataclass(frozen=True)
class AdvanceResult:
    start: date
    end: date  # inclusive
    transactions: int
    exposed: int
    activated: int
    files: list[Path]


def _manifest(sim_dir: Path) -> dict[str, Any]:
    path = sim_dir / "simulation.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no simulation here; run `bankgrowth simulate` first")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def advanced_to(sim_dir: Path) -> date:
    m = _manifest(sim_dir)
    config = m["config"]
    assert isinstance(config, dict)
    return date.fromisoformat(str(m.get("advanced_to") or config["end_date"]))


def _bindings(bank: Path, at_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Live bindings at ``at_us``: (customer_id, card_id, institution index) per binding."""
    b = pq.read_table(
        bank / "quickpay_bindings.parquet", columns=["customer_id", "card_id", "institution", "unbound_at"]
    )
    unbound = b.column("unbound_at").cast(pa.int64()).fill_null(np.iinfo(np.int64).max)
    live = np.asarray(pc.greater(unbound, at_us).to_numpy(zero_copy_only=False), dtype=bool)
    inst_index = {name: i for i, name in enumerate(INSTITUTION_MIX)}
    inst = np.array([inst_index.get(x, len(inst_index) - 1) for x in b.column("institution").to_pylist()])
    return (
        b.column("customer_id").to_numpy()[live],
        b.column("card_id").to_numpy()[live],
        inst[live],
    )


def advance(sim_dir: Path, days: int, exposures: pa.Table, *, timezone: str = "Asia/Shanghai") -> AdvanceResult:
    """Simulate ``days`` more days after the last simulated one; write the transactions to
    ``bank/transactions_advance_<start>_<end>.parquet`` and the treatments' truth to
    ``truth/effects_<start>_<end>.parquet``; record the new end in the manifest."""
    if days < 1:
        raise ValueError(f"days must be at least 1; found {days}")
    manifest = _manifest(sim_dir)
    config = manifest["config"]
    assert isinstance(config, dict)
    seed = int(config["seed"])
    start = advanced_to(sim_dir) + timedelta(days=1)
    end = start + timedelta(days=days - 1)
    tz = ZoneInfo(timezone)
    start_us = int(datetime.combine(start, time(), tz).timestamp() * 1e6)
    bank, truth_dir = sim_dir / "bank", sim_dir / "truth"
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7_000_000, start.toordinal()]))

    truth = pq.read_table(truth_dir / "customer_truth.parquet")
    cid = truth.column("customer_id").to_numpy()
    n = cid.size
    index = {int(c): i for i, c in enumerate(cid)}
    rate = truth.column("txn_rate_per_day").to_numpy()
    never = truth.column("never_transacts").to_numpy(zero_copy_only=False).astype(bool)
    withdrawal = truth.column("withdrawal_share").to_numpy()
    mean_amount = truth.column("mean_amount_fen").to_numpy()

    def ts(name: str) -> np.ndarray:
        col = truth.column(name).cast(pa.int64())
        return np.asarray(col.fill_null(np.iinfo(np.int64).max).to_numpy(), dtype=np.int64)

    churn_us, dorm_from, dorm_to = ts("churn_at"), ts("dormant_from"), ts("dormant_to")
    dorm_to = np.where(dorm_from == np.iinfo(np.int64).max, np.iinfo(np.int64).min, dorm_to)

    b_cust, b_card, b_inst = _bindings(bank, start_us)
    b_idx = np.array([index[int(c)] for c in b_cust], dtype=np.int64)
    k = np.bincount(b_idx, minlength=n)
    card_of = np.full(n, -1, dtype=np.int64)
    card_of[b_idx] = b_card

    factor = calendar.intensity(start, days)
    day_us = start_us + np.arange(days, dtype=np.int64) * US_PER_DAY
    # λ0[i, d]: the base rate on day d (0 when unbound, never, churned or dormant that day)
    alive = (k > 0) & ~never
    base = np.zeros((n, days))
    for d in range(days):
        mid = day_us[d] + US_PER_DAY // 2
        on = alive & (churn_us > mid) & ~((dorm_from <= mid) & (mid < dorm_to))
        base[on, d] = rate[on] * np.sqrt(k[on]) * factor[d]
    counted = 1 - withdrawal  # a withdrawal is not a counted transaction

    # treatments: the multiplier (active) or the activation (inactive) per customer and day
    mult = np.ones((n, days))
    activated_rate = np.zeros((n, days))
    exp_rows: list[_Exposed] = []
    activated = 0
    ex = exposures.to_pylist() if exposures.num_rows else []
    uplift = {t: truth.column(f"uplift_{t}").to_numpy() for t in TREATMENTS}
    wtp = truth.column("savings_card_wtp_fen").to_numpy()
    opens = {c: truth.column(f"open_rate_{c}").to_numpy() for c in CHANNELS}
    for e in ex:
        i = index.get(int(e["customer_id"]))  # type: ignore[arg-type]
        if i is None or e["treatment"] not in uplift or k[i] == 0:
            if i is not None:
                exp_rows.append(_Exposed(str(e["source"]), i))
            continue
        at_us = int(e["at"].timestamp() * 1e6)  # type: ignore[union-attr]
        channel = e["message_channel"]
        p_msg = float(opens[str(channel)][i]) if channel in opens else 0.0
        p_wallet = WALLET_NOTICE if e["right_granted"] else 0.0
        notice = 1 - (1 - p_msg) * (1 - p_wallet)
        u = float(uplift[str(e["treatment"])][i])
        if e["treatment"] == "savings_card" and wtp[i] < CARD_PRICE_FEN:
            u = 0.0
        offset = (at_us - start_us) // US_PER_DAY  # negative: exposed before this advance began
        window = slice(int(max(0, offset)), int(max(0, min(days, offset + RESPONSE_DAYS))))
        if window.start >= window.stop:  # the response window is over
            exp_rows.append(_Exposed(str(e["source"]), i))
            continue
        active_now = base[i, window].sum() > 0
        m1 = np.ones(days)
        act1 = np.zeros(days)
        if active_now:
            m1[window] = 1 + u
            expected = (base[i] * counted[i] * (1 + (m1 - 1) * notice)).sum()
            if rng.random() < notice:
                mult[i] = np.maximum(mult[i], m1)
        else:
            act1[window] = ACTIVATED_RATE * factor[window]
            expected = (act1 * counted[i]).sum() * u * notice
            if rng.random() < u * notice:
                activated_rate[i] = np.maximum(activated_rate[i], act1)
                activated += 1
        e0 = float((base[i] * counted[i]).sum())
        exp_rows.append(
            _Exposed(
                str(e["source"]), i, bool(active_now), e0, float(expected), u * notice, float((act1 * counted[i]).sum())
            )
        )

    lam = base * mult + activated_rate
    counts = rng.poisson(lam)
    total = int(counts.sum())
    cust_i, day_i = np.nonzero(counts)
    reps = counts[cust_i, day_i]
    cust_i, day_i = np.repeat(cust_i, reps), np.repeat(day_i, reps)
    peak = rng.choice(4, size=total, p=[0.18, 0.32, 0.38, 0.12])
    hour = np.mod(np.array([9.5, 12.5, 19.5, 23.2])[peak] + rng.normal(0, 1.6, total), 24)
    txn_us = day_us[day_i] + (hour / 24 * US_PER_DAY).astype(np.int64)
    # institution: one of the customer's live bindings, at random
    order = np.argsort(b_idx, kind="stable")
    first_binding = np.searchsorted(b_idx[order], np.arange(n))
    pick = first_binding[cust_i] + (rng.random(total) * k[cust_i]).astype(np.int64)
    inst = b_inst[order][pick] if total else np.zeros(0, np.int64)
    cats = rng.choice(len(CATEGORY_MIX), size=total, p=_CAT_P)
    is_withdrawal = rng.random(total) < withdrawal[cust_i]
    scene = np.where(is_withdrawal, 3, rng.choice(3, size=total, p=[0.5, 0.4, 0.1]))
    amount = mean_amount[cust_i] * _CAT_F[cats] * np.exp(rng.normal(-0.4, 0.9, total))
    amount = np.where(is_withdrawal, amount * 3, amount)
    amount_fen = np.clip(np.round(amount), 1, 5_000_000_000).astype(np.int64)
    sort = np.lexsort((txn_us, cust_i))
    cust_i, txn_us, inst, cats, scene, amount_fen = (a[sort] for a in (cust_i, txn_us, inst, cats, scene, amount_fen))
    first_id = int(manifest.get("next_txn_id") or _next_txn_id(bank))
    table = pa.table(
        {
            "txn_id": pa.array(np.arange(first_id, first_id + total, dtype=np.int64)),
            "customer_id": pa.array(cid[cust_i]),
            "card_id": pa.array(card_of[cust_i]),
            "institution": pa.array([list(INSTITUTION_MIX)[j] for j in inst], pa.string()),
            "amount_fen": pa.array(amount_fen),
            "txn_at": pa.array(txn_us, pa.timestamp("us", tz="UTC")),
            "merchant_category": pa.array([schema.MERCHANT_CATEGORIES[j] for j in cats], pa.string()),
            "scene": pa.array([schema.SCENES[j] for j in scene], pa.string()),
        },
        schema=schema.TRANSACTIONS.arrow_schema,
    )
    tag = f"{start:%Y%m%d}_{end:%Y%m%d}"
    txn_path = bank / f"transactions_advance_{tag}.parquet"
    pq.write_table(table, txn_path, compression="zstd")

    effects = _effects(exp_rows, cid, mean_amount)
    effects_path = truth_dir / f"effects_{tag}.parquet"
    pq.write_table(effects, effects_path, compression="zstd")
    manifest["advanced_to"] = end.isoformat()
    manifest["next_txn_id"] = first_id + total
    manifest.setdefault("advances", [])
    manifest["advances"].append(
        {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "transactions": total,
            "exposures": len(ex),
            "written_at": datetime.now(UTC).isoformat(),
        }
    )
    (sim_dir / "simulation.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return AdvanceResult(start, end, total, len(ex), activated, [txn_path, effects_path])


def _next_txn_id(bank: Path) -> int:
    biggest = 0
    for path in bank.glob("transactions*.parquet"):
        col = pq.read_table(path, columns=["txn_id"]).column("txn_id")
        if len(col):
            biggest = max(biggest, int(pc.max(col).as_py()))
    return biggest + 1


@dataclass(frozen=True)
class _Exposed:
    """One exposure's expected outcome: counted transactions without (e0) and with (e1) the
    treatment; for an inactive customer, q is the activation probability and act_mass the
    expected count once activated. A customer unable to respond (no live binding) has no effect."""

    source: str
    i: int
    active: bool = False
    e0: float = 0.0
    e1: float = 0.0
    q: float = 0.0
    act_mass: float = 0.0


def _effects(rows: list[_Exposed], cid: np.ndarray, mean_amount: np.ndarray) -> pa.Table:
    out: dict[str, list[object]] = {name: [] for name in TRUTH_EFFECTS_SCHEMA.names}
    for r in rows:
        per_txn = mean_amount[r.i] * AMOUNT_FACTOR
        e0, e1 = r.e0, r.e1
        p0 = 1 - np.exp(-e0)
        p1 = 1 - np.exp(-e1) if r.active else p0 + (1 - p0) * r.q * (1 - np.exp(-r.act_mass))
        out["source"].append(r.source)
        out["customer_id"].append(int(cid[r.i]))
        out["expected_txns_0"].append(float(e0))
        out["expected_txns_1"].append(float(e1))
        out["p_convert_0"].append(float(p0))
        out["p_convert_1"].append(float(p1))
        out["expected_amount_0"].append(float(e0 * per_txn))
        out["expected_amount_1"].append(float(e1 * per_txn))
    return pa.table(out, schema=TRUTH_EFFECTS_SCHEMA)
