"""A synthetic bank with known ground truth.

The simulator writes the bank's data (the canonical tables, as Parquet files that ``load`` reads
like any bank export) and, apart from it, the hidden truth about every customer: transaction
rate, lifetime, dormant spell and the response parameters that decide how the customer reacts to
each kind of treatment. Insight and models never read the truth; it exists so that measured stages,
model scores and campaign lift can be checked against what really happened.

Dynamics (per customer *i*, per binding *b*):

- Customers register over the years before and during the history window; most hold a card, some
  are phone-only platform users who cannot bind until they open an account.
- Card holders adopt quick-pay bindings over time (exponential delay from card opening), to one to
  four institutions drawn from the institution mix; a binding may later be removed.
- While a binding is live the customer transacts as a Poisson process with a customer rate
  ``λ_i ~ Gamma`` (heterogeneous) shared across bindings, modulated by the weekday and festival
  calendar — the Pareto/NBD family, so BG/NBD-like dynamics appear in the data.
- Each customer has an exponential lifetime after first binding (churn: no transaction after
  it) and may have one dormant spell that ends (won back). A share of bound customers never
  transact — the Activation audience.
- Amounts are log-normal per customer and merchant category; a small, customer-specific share of
  transactions are withdrawals from the wallet back to the card (提现回流).
- Referrals link newer customers to established, active ones.

The output is deterministic for a given seed and configuration: every chunk of customers draws from
its own stream ``SeedSequence([seed, chunk])``, so memory is bounded by the chunk size.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bankgrowth.warehouse import calendar, schema

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(customers_done, customers_total)``."""

US_PER_DAY = 86_400_000_000

INSTITUTION_MIX = {
    "wechat_pay": 0.44,
    "alipay": 0.34,
    "unionpay_cloud": 0.07,
    "jd_pay": 0.05,
    "meituan_pay": 0.05,
    "douyin_pay": 0.04,
    "other": 0.01,
}
CATEGORY_MIX = {
    "apparel": 0.07,
    "dining": 0.22,
    "grocery": 0.2,
    "housing": 0.02,
    "utilities": 0.05,
    "transport": 0.12,
    "travel": 0.03,
    "entertainment": 0.06,
    "ecommerce": 0.14,
    "education": 0.02,
    "health": 0.03,
    "finance": 0.02,
    "other": 0.02,
}
CATEGORY_AMOUNT_FACTOR = {
    "apparel": 2.5,
    "dining": 0.8,
    "grocery": 1.0,
    "housing": 12.0,
    "utilities": 2.0,
    "transport": 0.35,
    "travel": 8.0,
    "entertainment": 1.5,
    "ecommerce": 1.6,
    "education": 6.0,
    "health": 2.5,
    "finance": 10.0,
    "other": 1.0,
}
CITIES = (
    ("北京", "Beijing", 1),
    ("上海", "Shanghai", 1),
    ("杭州", "Hangzhou", 2),
    ("南京", "Nanjing", 2),
    ("长沙", "Changsha", 2),
    ("泉州", "Quanzhou", 3),
    ("南宁", "Nanning", 3),
    ("顺德", "Shunde", 3),
    ("洛阳", "Luoyang", 4),
    ("赣州", "Ganzhou", 4),
    ("遵义", "Zunyi", 4),
    ("曲靖", "Qujing", 5),
)
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈")
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉斌宇浩凯晨欣怡雪琳")
# Treatments whose true effect the truth file records (see docs/data-model.md, ground truth).
TREATMENTS = ("voucher", "points", "savings_card", "message", "referral_reward", "binding_reward")
CHANNELS = ("sms", "app_push", "wechat_template", "enterprise_wechat", "display_slot", "outbound_call")


class SimulationConfig:
    """Shape of the synthetic bank. Every field has a sensible default; all are documented."""

    def __init__(
        self,
        *,
        customers: int = 100_000,
        seed: int = 42,
        end_date: date = date(2026, 10, 31),
        history_days: int = 365,
        branches: int = 8,
        sub_branches_per_branch: int = 3,
        activity: float = 1.0,
        events_per_customer: float = 6.0,
        chunk_customers: int = 100_000,
    ) -> None:
        if customers < 1:
            raise ValueError("customers must be at least 1")
        if not 1 <= branches <= len(CITIES):
            raise ValueError(f"branches must be from 1 to {len(CITIES)}")
        if history_days < 30:
            raise ValueError("history_days must be at least 30")
        self.customers = customers
        self.seed = seed
        self.end_date = end_date
        self.history_days = history_days
        self.branches = branches
        self.sub_branches_per_branch = sub_branches_per_branch
        self.activity = activity
        self.events_per_customer = events_per_customer
        self.chunk_customers = chunk_customers

    @property
    def start_date(self) -> date:
        return self.end_date - timedelta(days=self.history_days - 1)

    def as_dict(self) -> dict[str, object]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in vars(self).items()}


@dataclass
class SimulationResult:
    bank_dir: Path
    truth_dir: Path
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "bank_dir": str(self.bank_dir), "truth_dir": str(self.truth_dir)}


TRUTH_SCHEMA = pa.schema(
    [
        ("customer_id", pa.int64()),
        ("has_card", pa.bool_()),
        ("never_transacts", pa.bool_()),
        ("txn_rate_per_day", pa.float64()),
        ("first_bound_at", pa.timestamp("us", tz="UTC")),
        ("churn_at", pa.timestamp("us", tz="UTC")),
        ("dormant_from", pa.timestamp("us", tz="UTC")),
        ("dormant_to", pa.timestamp("us", tz="UTC")),
        ("mean_amount_fen", pa.float64()),
        ("withdrawal_share", pa.float64()),
        ("baseline_active_14d", pa.float64()),
        *[(f"uplift_{t}", pa.float64()) for t in TREATMENTS],
        ("savings_card_wtp_fen", pa.int64()),
        *[(f"open_rate_{c}", pa.float64()) for c in CHANNELS],
    ]
)


def branch_table(config: SimulationConfig) -> pa.Table:
    rows: list[dict[str, object]] = [
        {
            "branch_id": "HQ",
            "parent_id": None,
            "level": "hq",
            "name_zh": "总行",
            "name_en": "Head Office",
            "city": "Beijing",
            "city_tier": 1,
        }
    ]
    for b in range(config.branches):
        zh, en, tier = CITIES[b]
        bid = f"B{b + 1:02d}"
        rows.append(
            {
                "branch_id": bid,
                "parent_id": "HQ",
                "level": "branch",
                "name_zh": f"{zh}分行",
                "name_en": f"{en} Branch",
                "city": en,
                "city_tier": tier,
            }
        )
        for s in range(config.sub_branches_per_branch):
            rows.append(
                {
                    "branch_id": f"{bid}-S{s + 1:02d}",
                    "parent_id": bid,
                    "level": "sub_branch",
                    "name_zh": f"{zh}第{s + 1}支行",
                    "name_en": f"{en} Sub-branch {s + 1}",
                    "city": en,
                    "city_tier": tier,
                }
            )
    return pa.Table.from_pylist(rows, schema=schema.BRANCHES.arrow_schema)


def _strings(values: tuple[str, ...] | list[str], index: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Plain string column from category codes (decoded in Arrow, not in Python)."""
    codes = pa.array(np.asarray(index, dtype=np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(codes, pa.array(list(values), pa.string())).cast(pa.string())


def _ts(us: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    mask = None if valid is None else ~valid
    return pa.array(us.astype("int64"), type=pa.timestamp("us", tz="UTC"), mask=mask)


class _Chunk:
    """Generates one block of customers and everything that hangs off them."""

    def __init__(
        self,
        config: SimulationConfig,
        chunk: int,
        first_id: int,
        n: int,
        ids: dict[str, int],
        sub_branches: list[tuple[str, int]],
        cum_intensity: np.ndarray,
    ) -> None:
        self.c = config
        self.rng = np.random.default_rng(np.random.SeedSequence([config.seed, chunk]))
        self.first_id = first_id
        self.n = n
        self.ids = ids
        self.sub_branches = sub_branches
        self.cum = cum_intensity  # cumulative calendar intensity at day boundaries, len days+1
        tz = ZoneInfo("Asia/Shanghai")
        self.start_us = int(datetime.combine(config.start_date, time(), tz).timestamp() * 1e6)
        self.end_us = self.start_us + config.history_days * US_PER_DAY
        self.end_day = config.history_days

    # -- customers ---------------------------------------------------------------------------
    def latent(self) -> dict[str, np.ndarray]:
        """Draw each customer's attributes and hidden behaviour parameters."""
        rng, n, c = self.rng, self.n, self.c
        cid = np.arange(self.first_id, self.first_id + n, dtype=np.int64)
        weights = np.array([1.0 / (k + 1) ** 0.6 for k in range(len(self.sub_branches))])
        br = rng.choice(len(self.sub_branches), size=n, p=weights / weights.sum())
        branch_tier = np.array([t for _, t in self.sub_branches])[br]
        city_tier = np.where(rng.random(n) < 0.8, branch_tier, rng.integers(1, 6, n))
        age = np.clip(rng.normal(39, 13, n), 18, 88).astype(int)
        birth_year = c.end_date.year - age
        gender = rng.choice(3, size=n, p=[0.495, 0.495, 0.01])
        # days relative to history start: 82% registered before it (up to 8 years), the rest during
        reg_day = np.where(
            rng.random(n) < 0.82,
            -rng.integers(1, 8 * 365, n),
            rng.integers(0, self.end_day, n),
        )
        # card holding: 78% hold a debit card, some of those also a credit card; the rest are
        # phone-only or real-name platform users without an account.
        has_card = rng.random(n) < 0.8
        card_open_day = np.minimum(reg_day + np.where(has_card, rng.integers(0, 30, n), 0), self.end_day - 1)
        # latent behaviour
        rate = rng.gamma(shape=0.75, scale=0.28 * c.activity, size=n)  # txn per day while live
        never = rng.random(n) < 0.18
        life_days = rng.exponential(2600, n)
        dormant = rng.random(n) < 0.15
        dorm_start = rng.integers(0, self.end_day, n)
        dorm_len = rng.integers(45, 160, n)
        mean_amount = np.exp(rng.normal(np.log(6500), 0.55, n))
        withdrawal = rng.beta(1.0, 20.0, n)
        fav_cat = rng.choice(len(CATEGORY_MIX), size=n, p=list(CATEGORY_MIX.values()))
        consent = rng.random(n) < 0.82
        # names and phones: synthetic but realistic-looking personal data
        sur = rng.integers(0, len(SURNAMES), n)
        g1 = rng.integers(0, len(GIVEN), n)
        g2 = np.where(rng.random(n) < 0.6, rng.integers(0, len(GIVEN), n), -1)
        names = [SURNAMES[a] + GIVEN[b] + (GIVEN[d] if d >= 0 else "") for a, b, d in zip(sur, g1, g2, strict=True)]
        prefix = rng.choice(np.array([3, 5, 7, 8, 9]), size=n)
        phones = [f"1{p}{(i * 7919 + 12345) % 1_000_000_000:09d}" for p, i in zip(prefix, cid, strict=True)]
        # referrals: 35% of customers registered in the window were invited by an earlier,
        # active customer of the same chunk (preferential to high-rate customers).
        referrer = np.full(n, -1, dtype=np.int64)
        invited = (reg_day >= 0) & (rng.random(n) < 0.35)
        pool = np.flatnonzero((reg_day < 0) & (rate > np.quantile(rate, 0.7)) & has_card)
        if pool.size and invited.any():
            referrer[invited] = cid[rng.choice(pool, size=int(invited.sum()))]
        latent = {
            "cid": cid,
            "reg_day": reg_day,
            "has_card": has_card,
            "card_open_day": card_open_day,
            "rate": rate,
            "never": never,
            "life_days": life_days,
            "dormant": dormant,
            "dorm_start": dorm_start,
            "dorm_end": dorm_start + dorm_len,
            "mean_amount": mean_amount,
            "withdrawal": withdrawal,
            "fav_cat": fav_cat,
            "age": age,
            "consent": consent,
            "branch": br,
            "city_tier": city_tier,
            "birth_year": birth_year,
            "gender": gender,
            "names": names,
            "phones": phones,
            "referrer": referrer,
        }
        return latent

    def customer_table(self, lt: dict[str, np.ndarray], auth: np.ndarray) -> pa.Table:
        """The customers table; written after cards, which decide the authentication level."""
        start = self.c.start_date
        reg_dates = np.datetime64(start) + lt["reg_day"].astype("timedelta64[D]")
        return pa.table(
            {
                "customer_id": pa.array(lt["cid"]),
                "branch_id": _strings([b for b, _ in self.sub_branches], lt["branch"]),
                "name": pa.array(lt["names"], type=pa.string()),
                "phone": pa.array(lt["phones"], type=pa.string()),
                "birth_year": pa.array(lt["birth_year"].astype(np.int64)),
                "gender": _strings(("F", "M", "U"), lt["gender"]),
                "city_tier": pa.array(lt["city_tier"].astype(np.int64)),
                "registered_on": pa.array(reg_dates, type=pa.date32()),
                "auth_level": _strings(schema.AUTH_LEVELS, auth),
                "marketing_consent": pa.array(lt["consent"]),
                "referrer_id": pa.array(lt["referrer"], mask=lt["referrer"] < 0),
            },
            schema=schema.CUSTOMERS.arrow_schema,
        )

    # -- cards and bindings --------------------------------------------------------------------
    def cards(self, lt: dict[str, np.ndarray]) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        rng, n = self.rng, self.n
        holders = np.flatnonzero(lt["has_card"])
        # every holder has a debit card; 30% also hold a credit card
        credit = holders[rng.random(holders.size) < 0.3]
        owner = np.concatenate([holders, credit])
        is_credit = np.concatenate([np.zeros(holders.size, bool), np.ones(credit.size, bool)])
        klass = rng.choice(3, size=owner.size, p=[0.72, 0.22, 0.06])
        open_day = lt["card_open_day"][owner] + np.where(is_credit, rng.integers(0, 400, owner.size), 0)
        open_day = np.minimum(open_day, self.end_day - 1)  # nothing is dated after the history ends
        closed = rng.random(owner.size) < 0.04
        close_day = open_day + rng.integers(30, 900, owner.size)
        closed &= close_day < self.end_day
        card_id = self._take_ids("cards", owner.size)
        start = np.datetime64(self.c.start_date)
        table = pa.table(
            {
                "card_id": pa.array(card_id),
                "customer_id": pa.array(lt["cid"][owner]),
                "card_type": _strings(("debit", "credit"), is_credit.astype(int)),
                "account_class": _strings(("I", "II", "III"), klass, mask=is_credit),
                "opened_on": pa.array(start + open_day.astype("timedelta64[D]"), type=pa.date32()),
                "closed_on": pa.array(start + close_day.astype("timedelta64[D]"), type=pa.date32(), mask=~closed),
            },
            schema=schema.CARDS.arrow_schema,
        )
        # authentication level follows from what the customer holds
        # without an account here: phone user, real-name verified, or verified by binding another
        # bank's card
        auth = rng.choice(3, size=n, p=[0.45, 0.4, 0.15])
        debit_class = np.full(n, 9)
        np.minimum.at(debit_class, owner[~is_credit], klass[~is_credit])
        auth = np.where(debit_class == 0, 4, np.where(debit_class < 9, 3, auth))
        # the card a binding uses: the customer's debit card (index into owner order)
        debit_of = np.full(n, -1, dtype=np.int64)
        debit_of[holders] = card_id[: holders.size]
        return table, auth, debit_of

    def bindings(self, lt: dict[str, np.ndarray], debit_of: np.ndarray) -> tuple[pa.Table, dict[str, np.ndarray]]:
        rng = self.rng
        holders = np.flatnonzero(debit_of >= 0)
        adopts = holders[rng.random(holders.size) < 0.86]
        first_day = lt["card_open_day"][adopts] + rng.exponential(90, adopts.size)
        adopts, first_day = adopts[first_day < self.end_day], first_day[first_day < self.end_day]
        k = rng.choice([1, 2, 3, 4], size=adopts.size, p=[0.5, 0.3, 0.15, 0.05])
        owner = np.repeat(adopts, k)
        nth = np.concatenate([np.arange(m) for m in k]) if k.size else np.zeros(0, int)
        inst_p = np.array(list(INSTITUTION_MIX.values()))
        # distinct institutions per customer: Gumbel top-k over the mix
        keys = np.log(inst_p)[None, :] + rng.gumbel(size=(adopts.size, inst_p.size))
        order = np.argsort(-keys, axis=1)
        inst = order[np.repeat(np.arange(adopts.size), k), nth]
        extra_delay = np.where(nth == 0, 0.0, rng.exponential(150, owner.size))
        bound_day = np.repeat(first_day, k) + extra_delay
        keep = bound_day < self.end_day
        owner, inst, bound_day = owner[keep], inst[keep], bound_day[keep]
        unbinds = rng.random(owner.size) < 0.12
        unbound_day = bound_day + rng.exponential(220, owner.size)
        unbinds &= unbound_day < self.end_day
        one_click = rng.random(owner.size) < 0.35
        channel = np.where(one_click, 0, rng.choice(5, size=owner.size, p=[0.3, 0.45, 0.12, 0.08, 0.05]))
        bid = self._take_ids("quickpay_bindings", owner.size)
        bound_us = self.start_us + (bound_day * US_PER_DAY).astype(np.int64)
        unbound_us = self.start_us + (unbound_day * US_PER_DAY).astype(np.int64)
        table = pa.table(
            {
                "binding_id": pa.array(bid),
                "customer_id": pa.array(lt["cid"][owner]),
                "card_id": pa.array(debit_of[owner]),
                "institution": _strings(tuple(INSTITUTION_MIX), inst),
                "bound_at": _ts(bound_us),
                "unbound_at": _ts(unbound_us, unbinds),
                "bind_channel": _strings(schema.BIND_CHANNELS, channel),
                "one_click": pa.array(one_click),
            },
            schema=schema.QUICKPAY_BINDINGS.arrow_schema,
        )
        end_day = np.where(unbinds, unbound_day, float(self.end_day))
        return table, {
            "owner": owner,
            "inst": inst,
            "start": bound_day,
            "end": end_day,
            "first_day": (adopts, first_day),
        }

    # -- transactions ----------------------------------------------------------------------------
    def transactions(self, lt: dict[str, np.ndarray], bd: dict[str, np.ndarray], debit_of: np.ndarray) -> pa.Table:
        rng = self.rng
        owner = bd["owner"]
        adopts, first_day = bd["first_day"]
        first = np.full(self.n, np.inf)
        first[adopts] = first_day
        death = first + lt["life_days"]
        share = 1.0 / np.bincount(owner, minlength=self.n)[owner].clip(min=1) ** 0.5
        lo = np.clip(bd["start"], 0, self.end_day)
        hi = np.clip(np.minimum(bd["end"], death[owner]), 0, self.end_day)
        live = (hi > lo) & ~lt["never"][owner]
        mass = np.where(live, self._cum_at(hi) - self._cum_at(lo), 0.0)
        counts = rng.poisson(lt["rate"][owner] * share * mass)
        total = int(counts.sum())
        b = np.repeat(np.arange(owner.size), counts)
        u = self._cum_at(lo)[b] + rng.random(total) * mass[b]
        day_pos = self._inverse_cum(u)
        cust = owner[b]
        # time of day: a mixture of lunch, evening and late-night peaks, kept inside the binding's
        # live interval (a transaction never precedes the binding or follows churn)
        peak = rng.choice(4, size=total, p=[0.18, 0.32, 0.38, 0.12])
        hour = np.array([9.5, 12.5, 19.5, 23.2])[peak] + rng.normal(0, 1.6, total)
        t_day = np.floor(day_pos) + np.mod(hour, 24) / 24
        t_day = np.clip(t_day, lo[b], hi[b] - 1e-6)
        # dormant spells thin the stream: transactions that fall inside are not made
        in_dorm = lt["dormant"][cust] & (t_day >= lt["dorm_start"][cust]) & (t_day < lt["dorm_end"][cust])
        keep = ~in_dorm
        b, cust, t_day = b[keep], cust[keep], t_day[keep]
        total = b.size
        txn_us = self.start_us + np.ceil(t_day * US_PER_DAY).astype(np.int64)
        cats = np.where(
            rng.random(total) < 0.45,
            lt["fav_cat"][cust],
            rng.choice(len(CATEGORY_MIX), size=total, p=list(CATEGORY_MIX.values())),
        )
        withdrawal = rng.random(total) < lt["withdrawal"][cust]
        scene = np.where(withdrawal, 3, rng.choice(3, size=total, p=[0.5, 0.4, 0.1]))
        cat_factor = np.array(list(CATEGORY_AMOUNT_FACTOR.values()))[cats]
        amount = lt["mean_amount"][cust] * cat_factor * np.exp(rng.normal(-0.4, 0.9, total))
        amount = np.where(withdrawal, amount * 3, amount)
        amount_fen = np.clip(np.round(amount), 1, 5_000_000_000).astype(np.int64)
        # clustered by customer, then time: the layout that makes per-customer work fastest
        order = np.lexsort((txn_us, cust))
        b, cust, txn_us, cats, scene, amount_fen = (a[order] for a in (b, cust, txn_us, cats, scene, amount_fen))
        ids = self._take_ids("transactions", total)
        return pa.table(
            {
                "txn_id": pa.array(ids),
                "customer_id": pa.array(lt["cid"][cust]),
                "card_id": pa.array(debit_of[cust]),
                "institution": _strings(tuple(INSTITUTION_MIX), bd["inst"][b]),
                "amount_fen": pa.array(amount_fen),
                "txn_at": _ts(txn_us),
                "merchant_category": _strings(schema.MERCHANT_CATEGORIES, cats),
                "scene": _strings(schema.SCENES, scene),
            },
            schema=schema.TRANSACTIONS.arrow_schema,
        )

    def events(self, lt: dict[str, np.ndarray]) -> pa.Table:
        rng = self.rng
        engagement = (lt["rate"] / 0.16) ** 0.5
        registered_days = np.clip(self.end_day - np.maximum(lt["reg_day"], 0), 0, self.end_day)
        lam = self.c.events_per_customer * engagement * registered_days / self.end_day
        counts = rng.poisson(lam)
        cust = np.repeat(np.arange(self.n), counts)
        total = cust.size
        lo = np.maximum(lt["reg_day"][cust], 0)
        day = lo + rng.random(total) * (self.end_day - lo)
        ev_us = self.start_us + (day * US_PER_DAY).astype(np.int64)
        etype = rng.choice(len(schema.EVENT_TYPES), size=total, p=[0.3, 0.3, 0.2, 0.04, 0.06, 0.07, 0.03])
        channel = rng.choice(3, size=total, p=[0.6, 0.3, 0.1])
        pages = ("home", "coupon_center", "savings_card", "activity", "wallet", "bind_card")
        page_idx = rng.integers(0, len(pages), total)
        order = np.lexsort((ev_us, cust))
        cust, ev_us, etype, channel, page_idx = (a[order] for a in (cust, ev_us, etype, channel, page_idx))
        return pa.table(
            {
                "event_id": pa.array(self._take_ids("events", total)),
                "customer_id": pa.array(lt["cid"][cust]),
                "event_type": _strings(schema.EVENT_TYPES, etype),
                "channel": _strings(schema.EVENT_CHANNELS, channel),
                "page": _strings(pages, page_idx, mask=etype == 0),
                "event_at": _ts(ev_us),
            },
            schema=schema.EVENTS.arrow_schema,
        )

    # -- truth --------------------------------------------------------------------------------
    def truth(self, lt: dict[str, np.ndarray], bd: dict[str, np.ndarray]) -> pa.Table:
        rng, n = self.rng, self.n
        adopts, first_day = bd["first_day"]
        first = np.full(n, np.nan)
        first[adopts] = first_day
        bound = ~np.isnan(first)
        churn = first + lt["life_days"]
        churned = bound & (churn < self.end_day)
        dorm = lt["dormant"] & bound
        to_us = lambda d: self.start_us + (np.nan_to_num(d) * US_PER_DAY).astype(np.int64)  # noqa: E731
        # response: a treatment multiplies the daily rate by (1 + uplift) over the response window;
        # for customers who never transacted, uplift is the probability the treatment activates them.
        young = lt["age"] < 30
        base = 1.0 - np.exp(-lt["rate"] * 14 * ~lt["never"])
        uplift = {
            "voucher": rng.beta(2, 8, n) * np.where(lt["rate"] < 0.05, 1.6, 0.8),
            "points": rng.beta(1.5, 12, n),
            "savings_card": rng.beta(2, 10, n),
            "message": rng.beta(1, 30, n),
            "referral_reward": rng.beta(1, 20, n) * np.where(young, 1.5, 1.0),
            "binding_reward": rng.beta(2, 9, n),
        }
        wtp = np.round(np.exp(rng.normal(np.log(500), 0.7, n))).astype(np.int64)
        opens = {
            "sms": rng.beta(2, 30, n),
            "app_push": rng.beta(2, 18, n) * np.where(young, 1.4, 0.8),
            "wechat_template": rng.beta(3, 14, n),
            "enterprise_wechat": rng.beta(3, 9, n),
            "display_slot": rng.beta(2, 25, n),
            "outbound_call": rng.beta(4, 8, n) * np.where(young, 0.6, 1.2),
        }
        cols: dict[str, pa.Array] = {
            "customer_id": pa.array(lt["cid"]),
            "has_card": pa.array(lt["has_card"]),
            "never_transacts": pa.array(lt["never"] & bound),
            "txn_rate_per_day": pa.array(lt["rate"]),
            "first_bound_at": _ts(to_us(first), bound),
            "churn_at": _ts(to_us(churn), churned),
            "dormant_from": _ts(to_us(lt["dorm_start"].astype(float)), dorm),
            "dormant_to": _ts(to_us(lt["dorm_end"].astype(float)), dorm),
            "mean_amount_fen": pa.array(lt["mean_amount"]),
            "withdrawal_share": pa.array(lt["withdrawal"]),
            "baseline_active_14d": pa.array(base),
            **{f"uplift_{t}": pa.array(np.clip(v, 0, 1)) for t, v in uplift.items()},
            "savings_card_wtp_fen": pa.array(wtp),
            **{f"open_rate_{c}": pa.array(np.clip(v, 0, 1)) for c, v in opens.items()},
        }
        return pa.table(cols, schema=TRUTH_SCHEMA)

    # -- helpers ------------------------------------------------------------------------------
    def _take_ids(self, table: str, count: int) -> np.ndarray:
        first = self.ids[table]
        self.ids[table] = first + count
        return np.arange(first, first + count, dtype=np.int64)

    def _cum_at(self, day: np.ndarray) -> np.ndarray:
        return np.interp(day, np.arange(self.cum.size), self.cum)

    def _inverse_cum(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.cum, np.arange(self.cum.size))


def simulate(config: SimulationConfig, out_dir: Path, *, progress: ProgressFn | None = None) -> SimulationResult:
    """Write a synthetic bank to ``out_dir/bank`` and its hidden truth to ``out_dir/truth``."""
    bank_dir, truth_dir = out_dir / "bank", out_dir / "truth"
    bank_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    branches = branch_table(config)
    pq.write_table(branches, bank_dir / "branches.parquet")
    sub_branches = [(r["branch_id"], r["city_tier"]) for r in branches.to_pylist() if r["level"] == "sub_branch"] or [
        ("HQ", 1)
    ]
    cum = np.concatenate([[0.0], np.cumsum(calendar.intensity(config.start_date, config.history_days))])
    names = ("customers", "cards", "quickpay_bindings", "transactions", "events")
    writers = {
        name: pq.ParquetWriter(bank_dir / f"{name}.parquet", schema.TABLES[name].arrow_schema, compression="zstd")
        for name in names
    }
    truth_writer = pq.ParquetWriter(truth_dir / "customer_truth.parquet", TRUTH_SCHEMA, compression="zstd")
    ids = {name: 1 for name in names}
    rows = {name: 0 for name in names} | {"branches": branches.num_rows}
    try:
        done = 0
        for chunk, first in enumerate(range(1, config.customers + 1, config.chunk_customers)):
            n = min(config.chunk_customers, config.customers - first + 1)
            gen = _Chunk(config, chunk, first, n, ids, sub_branches, cum)
            latent = gen.latent()
            cards, auth, debit_of = gen.cards(latent)
            bindings, bd = gen.bindings(latent, debit_of)
            tables = {
                "customers": gen.customer_table(latent, auth),
                "cards": cards,
                "quickpay_bindings": bindings,
                "transactions": gen.transactions(latent, bd, debit_of),
                "events": gen.events(latent),
            }
            for name, table in tables.items():
                writers[name].write_table(table, row_group_size=1_000_000)
                rows[name] += table.num_rows
            truth_writer.write_table(gen.truth(latent, bd))
            done += n
            if progress is not None:
                progress(done, config.customers)
    finally:
        for writer in writers.values():
            writer.close()
        truth_writer.close()
    manifest = {
        "config": config.as_dict(),
        "rows": rows,
        "generated_at": datetime.now(UTC).isoformat(),
        "note": "truth/ is the simulator's hidden ground truth; never load it as bank data.",
    }
    (out_dir / "simulation.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return SimulationResult(bank_dir=bank_dir, truth_dir=truth_dir, rows=rows)
