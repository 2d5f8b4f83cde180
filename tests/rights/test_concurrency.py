"""Races and crashes against the budget: 64 concurrent clients with retried idempotency keys, and a
process killed in the middle of a run of grants. On SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bankgrowth.platform.access import Principal
from bankgrowth.rights import ledger
from bankgrowth.rights.counters import Cap
from bankgrowth.rights.ledger import GrantRequest, Source
from bankgrowth.rights.models import Holding, LedgerEntry, Pool, Right
from tests.rights.test_ledger import make, reconciled

ROOT = Path(__file__).resolve().parents[2]


def test_64_clients_and_10000_attempts_with_retried_keys_grant_exactly_the_limit(store: Engine, hq: Principal) -> None:
    # given: a limit of 1,000 over 8 stripes; 10,000 attempts over 6,000 keys, so many keys are
    # sent two or three times, often at the same moment by different clients
    right_id, pool_id = make(store, hq, limit_units=1000, stripes=8)
    rng = random.Random(7)
    attempts = [f"k{rng.randrange(6000)}" for _ in range(10_000)]
    outcomes: list[tuple[str, str, int | None]] = []
    lock = threading.Lock()

    def client(chunk: list[str]) -> None:
        for key in chunk:
            customer = f"C{int(key[1:]) % 3000}"
            with Session(store) as session, session.begin():
                right, pool = session.get_one(Right, right_id), session.get_one(Pool, pool_id)
                result = ledger.grant(
                    session,
                    right=right,
                    pool=pool,
                    request=GrantRequest(key, customer),
                    source=Source("campaign", "race"),
                    actor="race",
                    caps=[Cap("campaign:race", 3)],
                )
            with lock:
                outcomes.append((key, result.status, result.holding_id))

    # when
    with ThreadPoolExecutor(64) as pool:
        list(pool.map(client, [attempts[i::64] for i in range(64)]))

    # then: exactly the limit, each key at most once, every retry pointing at the first holding
    with Session(store) as session:
        holdings = session.execute(select(Holding.grant_key, Holding.id)).all()
        entries = session.scalar(select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "grant"))
    assert len(holdings) == entries == 1000
    assert len({key for key, _ in holdings}) == 1000
    by_key = dict(holdings)
    statuses = Counter(status for _, status, _ in outcomes)
    assert statuses["granted"] == 1000
    assert statuses["exhausted"] > 0 and statuses["duplicate"] > 0
    for key, status, holding_id in outcomes:
        if status in ("granted", "duplicate") and key in by_key:
            assert holding_id == by_key[key]
        else:
            assert status in ("exhausted", "capped"), (key, status)
    reconciled(store)


@pytest.mark.slow
def test_a_process_killed_in_the_middle_of_its_grants_leaves_a_clean_ledger_and_a_retry_completes(
    store: Engine, hq: Principal
) -> None:
    # given: a worker granting 3,000 keys in batches of 25, each batch one transaction
    right_id, pool_id = make(store, hq, limit_units=10_000)
    url = store.url.render_as_string(hide_password=False)
    command = [sys.executable, "-m", "tests.rights.grant_worker", url, str(right_id), str(pool_id), "3000"]
    worker = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    # when: it is killed once some batches have committed
    assert worker.stdout is not None
    for line in worker.stdout:
        if int(line) >= 500:
            break
    time.sleep(random.Random(3).uniform(0.0, 0.2))
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    with Session(store) as session:
        granted_before = session.scalar(select(func.count()).select_from(Holding)) or 0
    # then: what committed is consistent, and a rerun finishes without granting anything twice
    assert 500 <= granted_before < 3000
    reconciled(store)
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    with Session(store) as session:
        keys = list(session.scalars(select(Holding.grant_key)))
    assert len(keys) == len(set(keys)) == 3000
    reconciled(store)
