"""Finding customers the rules do not name: lookalike expansion from a seed audience, and k-means
clustering of behaviour with a profile of each cluster.

Both read the numeric tags (counts, amounts, shares, yes/no tags) of one tag version, standardized
(heavy-tailed counts and amounts on a log scale, missing values take the column's median, then each
column is centred and scaled by its standard deviation), with scikit-learn doing the fitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pandas as pd

EXCLUDED = {"customer_id", "rfm_r", "rfm_f", "rfm_m", "rfc_c", "rfm_score"}  # ids, and scores derived from tags
BEHAVIOUR = (
    "txn_count_30d",
    "txn_count_90d",
    "txn_count_365d",
    "txn_amount_90d",
    "txn_amount_365d",
    "avg_ticket_365d",
    "institutions_used_365d",
    "active_days_30d",
    "weekend_share_90d",
    "night_share_90d",
    "online_share_90d",
    "withdrawal_amount_365d",
    "spend_food_365d",
    "spend_travel_365d",
    "spend_leisure_365d",
    "days_since_last_txn",
    "logins_30d",
)


def numeric_columns(t: ir.Table) -> list[str]:
    """Tag columns a model can read as numbers: integers, floats and yes/no tags."""
    out = []
    for name, dtype in t.schema().items():
        if name in EXCLUDED:
            continue
        if dtype.is_integer() or dtype.is_floating() or dtype.is_boolean():
            out.append(name)
    return out


def standardize(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, dict[str, tuple[float, float, float]]]:
    """(matrix, per column (median, mean, std) used), missing values imputed by the median.
    Counts, amounts and day spans are heavy-tailed (one ¥50,000 ticket among ¥50 ones), so a
    non-negative column that is not a share is taken as log(1 + x) first; otherwise a handful of
    extreme customers would become clusters of their own and dominate the lookalike weights."""
    x = frame[columns].astype("float64").to_numpy(copy=True)
    stats = {}
    for j, name in enumerate(columns):
        col = x[:, j]
        finite = col[~np.isnan(col)]
        if finite.size and "share" not in name and finite.min() >= 0 and finite.max() > 1:
            col[:] = np.log1p(col)
            finite = np.log1p(finite)
        median = float(np.median(finite)) if finite.size else 0.0
        col[np.isnan(col)] = median
        mean, std = float(col.mean()), float(col.std())
        x[:, j] = (col - mean) / (std if std > 0 else 1.0)
        stats[name] = (median, mean, std)
    return x, stats


# --- lookalike ----------------------------------------------------------------------------------


@dataclass
class Lookalike:
    seed: int
    population: int
    target: int
    customers: list[int]  # the chosen, best first
    scores: list[float]
    holdout_recall: float  # share of held-out seed members ranked within the top `target`
    holdout_auc: float  # held-out seed vs held-out population
    lift: float  # recall divided by the share of the population chosen
    top_features: list[tuple[str, float]] = field(default_factory=list)  # (feature, weight), strongest first


def lookalike(
    frame: pd.DataFrame,
    seed_ids: set[int],
    target: int,
    *,
    columns: list[str],
    holdout: float = 0.2,
    max_negatives: int = 200_000,
    random_state: int = 7,
) -> Lookalike:
    """Rank everyone outside the seed by how much they resemble it: a logistic regression of seed
    against population on the standardized tags. Quality is measured first on a held-out part of
    the seed (how many of them the model ranks within the top ``target``), then the model is refit
    on the whole seed to choose the ``target`` customers."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(random_state)
    ids = frame["customer_id"].to_numpy()
    x, _ = standardize(frame, columns)
    is_seed = np.isin(ids, np.fromiter(seed_ids, dtype=ids.dtype, count=len(seed_ids)))
    seed_idx, pop_idx = np.flatnonzero(is_seed), np.flatnonzero(~is_seed)
    if len(seed_idx) < 10 or len(pop_idx) < 10:
        raise ValueError(
            f"lookalike needs at least 10 seed members and 10 others; found {len(seed_idx)} and {len(pop_idx)}"
        )
    target = min(target, len(pop_idx))

    def fit(pos: np.ndarray, neg: np.ndarray) -> LogisticRegression:
        neg = neg if len(neg) <= max_negatives else rng.choice(neg, max_negatives, replace=False)
        rows = np.concatenate([pos, neg])
        y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
        return LogisticRegression(max_iter=500, class_weight="balanced").fit(x[rows], y)

    # quality on held-out seed members: they compete with the population for the top `target` places
    shuffled = rng.permutation(seed_idx)
    n_out = max(1, int(len(shuffled) * holdout))
    seed_out, seed_in = shuffled[:n_out], shuffled[n_out:]
    pop_shuffled = rng.permutation(pop_idx)
    pop_out, pop_in = pop_shuffled[: len(pop_shuffled) // 5], pop_shuffled[len(pop_shuffled) // 5 :]
    probe = fit(seed_in, pop_in)
    candidates = np.concatenate([seed_out, pop_idx])
    scores = probe.decision_function(x[candidates])
    top = candidates[np.argsort(-scores, kind="stable")[:target]]
    recall = float(np.isin(seed_out, top).mean())
    auc_rows = np.concatenate([seed_out, pop_out])
    auc = float(
        roc_auc_score(np.r_[np.ones(len(seed_out)), np.zeros(len(pop_out))], probe.decision_function(x[auc_rows]))
    )
    # the choice: refit on the whole seed
    model = fit(seed_idx, pop_idx)
    final = model.decision_function(x[pop_idx])
    order = np.argsort(-final, kind="stable")[:target]
    weights = sorted(zip(columns, model.coef_[0], strict=True), key=lambda cw: -abs(cw[1]))[:8]
    share = target / (len(pop_idx) + len(seed_out))
    return Lookalike(
        seed=len(seed_idx),
        population=len(pop_idx),
        target=target,
        customers=[int(i) for i in ids[pop_idx[order]]],
        scores=[round(float(s), 4) for s in final[order]],
        holdout_recall=round(recall, 4),
        holdout_auc=round(auc, 4),
        lift=round(recall / share, 2) if share > 0 else 0.0,
        top_features=[(c, round(float(w), 3)) for c, w in weights],
    )


# --- clustering ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    number: int
    customers: int
    share: float
    means: dict[str, float]  # feature means in the tags' own units
    distinctive: list[tuple[str, float]]  # features whose standardized mean is furthest from 0
    stages: dict[str, int]  # lifecycle stage counts in the cluster
    suggested_name: str


@dataclass
class Clustering:
    k: int
    features: list[str]
    customers: int
    inertia: float
    clusters: list[Cluster]


def cluster(
    frame: pd.DataFrame,
    *,
    k: int = 6,
    columns: list[str],
    sample: int = 200_000,
    random_state: int = 7,
) -> Clustering:
    """k-means on the standardized behaviour tags (fitted on a sample when the population is large,
    then every customer is assigned), with what sets each cluster apart so an operator can name it."""
    from sklearn.cluster import KMeans

    if not 2 <= k <= 20:
        raise ValueError(f"k must be 2 to 20; found {k}")
    x, _ = standardize(frame, columns)
    rng = np.random.default_rng(random_state)
    fit_rows = x if len(x) <= sample else x[rng.choice(len(x), sample, replace=False)]
    model = KMeans(n_clusters=k, n_init=4, random_state=random_state).fit(fit_rows)
    labels = model.predict(x)
    clusters = []
    for c in range(k):
        mask = labels == c
        z = x[mask].mean(axis=0) if mask.any() else np.zeros(len(columns))
        distinctive = sorted(zip(columns, z, strict=True), key=lambda fz: -abs(fz[1]))[:5]
        stages = frame.loc[mask, "stage"].value_counts().to_dict() if "stage" in frame else {}
        name = ", ".join(f"{'high' if v > 0 else 'low'} {f}" for f, v in distinctive[:2])
        clusters.append(
            Cluster(
                number=c,
                customers=int(mask.sum()),
                share=round(float(mask.mean()), 4),
                means={f: round(float(frame.loc[mask, f].astype("float64").mean()), 2) for f in columns},
                distinctive=[(f, round(float(v), 2)) for f, v in distinctive],
                stages={str(s): int(n) for s, n in stages.items()},
                suggested_name=name,
            )
        )
    clusters.sort(key=lambda cl: -cl.customers)
    return Clustering(
        k=k,
        features=list(columns),
        customers=len(x),
        inertia=round(float(model.inertia_), 2),
        clusters=clusters,
    )


def behaviour_columns(t: ir.Table) -> list[str]:
    present = set(t.columns)
    return [c for c in BEHAVIOUR if c in present]


def frame_of(t: ir.Table, columns: list[str]) -> pd.DataFrame:
    extra = [c for c in ("stage",) if c in t.columns and c not in columns]
    return t.select("customer_id", *columns, *extra).to_pandas()
