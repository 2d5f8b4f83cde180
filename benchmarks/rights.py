"""Grants per second on one hot budget, PostgreSQL, 32 concurrent clients, against the plain
single-row conditional update in the same run.

    python -m benchmarks.rights [--clients 32] [--seconds 10] [--batch 50]

A throwaway PostgreSQL server (the machine's binaries, fsync on, default synchronous_commit) is
started for the run. Each client is its own process (no shared interpreter lock between clients).
Variants, each on a fresh budget with a limit far above what the run can spend:

- ``baseline``: ``UPDATE … SET used = used + 1 WHERE id = 1 AND used + 1 <= lim`` on one row of a
  table of its own, one per transaction, through psycopg in autocommit mode — the counter alone, as
  lean as a Python client can send it, with no ledger, holding or cap;
- ``single``: ``ledger.grant`` — a whole grant (key claim, per-customer cap, striped budget, holding,
  ledger entry), one per transaction, on a pool of 32 stripes;
- ``batched``: ``ledger.grant_many`` with ``--batch`` grants per transaction, as campaign execution
  and the channel API's grant queue call it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def _client(url: str, variant: str, client: int, seconds: float, batch: int, ready: Any, go: Any, queue: Any) -> None:
    from bankgrowth.operational import db
    from bankgrowth.rights import ledger
    from bankgrowth.rights.counters import Cap
    from bankgrowth.rights.ledger import GrantRequest, Source
    from bankgrowth.rights.models import Pool, Right

    if variant == "baseline":
        _baseline_client(url, seconds, ready, go, queue, client)
        return
    engine = db.make_engine(url, pool_size=1, max_overflow=0)
    with Session(engine) as session:
        right = session.get_one(Right, 1)
        pool = session.get_one(Pool, 1)
        session.expunge_all()
        session.execute(text("SELECT 1"))
    done, n = 0, 0
    ready.put(client)
    go.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with Session(engine) as session, session.begin():
            if variant == "single":
                key = f"{variant}-{client}-{n}"
                result = ledger.grant(
                    session,
                    right=right,
                    pool=pool,
                    request=GrantRequest(key, f"C{client}-{n}"),
                    source=Source("campaign", "bench"),
                    actor="bench",
                    caps=[Cap("campaign:bench", 1)],
                )
                done += int(result.status == "granted")
            else:
                requests = [GrantRequest(f"{variant}-{client}-{n}-{i}", f"C{client}-{n}-{i}") for i in range(batch)]
                results = ledger.grant_many(
                    session,
                    right=right,
                    pool=pool,
                    requests=requests,
                    source=Source("campaign", "bench"),
                    actor="bench",
                    caps=[Cap("campaign:bench", 1)],
                )
                done += sum(r.status == "granted" for r in results)
        n += 1
    engine.dispose()
    queue.put(done)


def _baseline_client(url: str, seconds: float, ready: Any, go: Any, queue: Any, client: int) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True)
    statement = "UPDATE bench_counter SET used = used + 1 WHERE id = 1 AND used + 1 <= lim"
    conn.execute(statement.replace("+ 1 <=", "+ 0 <="))
    done = 0
    ready.put(client)
    go.wait()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done += conn.execute(statement).rowcount
    conn.close()
    queue.put(done)


def _setup(url: str) -> None:
    from bankgrowth.operational import db
    from bankgrowth.platform import service as platform_service
    from bankgrowth.rights import service as rights_service
    from bankgrowth.rights.schemas import PoolCreate, RightCreate

    engine = db.make_engine(url)
    db.upgrade(engine)
    with Session(engine) as session, session.begin():
        platform_service.ensure_root(session)
        hq = platform_service.system_principal(session, source="bench")
        rights_service.create_right(
            session,
            principal=hq,
            data=RightCreate(
                code="v5", kind="voucher", name_zh="立减金", name_en="Voucher", face_value_fen=500, unit_cost_fen=500
            ),
        )
        rights_service.create_pool(
            session,
            principal=hq,
            data=PoolCreate(code="hot", name_zh="热点预算", name_en="Hot budget", limit_units=10**12, stripes=32),
        )
        session.execute(
            text("CREATE TABLE bench_counter (id int PRIMARY KEY, used bigint NOT NULL, lim bigint NOT NULL)")
        )
        session.execute(text("INSERT INTO bench_counter VALUES (1, 0, 1000000000000)"))
    engine.dispose()


def _run(url: str, variant: str, clients: int, seconds: float, batch: int) -> float:
    ctx = mp.get_context("spawn")
    queue, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_client, args=(url, variant, c, seconds, batch, ready, go, queue)) for c in range(clients)
    ]
    for p in procs:
        p.start()
    for _ in procs:  # every client has imported and connected before the clock starts
        ready.get()
    go.set()
    total = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    from bankgrowth.operational import localpg
    from bankgrowth.operational.db import make_engine
    from bankgrowth.rights import ledger

    with localpg.local_postgres(max_connections=args.clients + 20) as server:
        url = localpg.create_database(server, "bench")
        _setup(url)
        rates = {v: _run(url, v, args.clients, args.seconds, args.batch) for v in ("baseline", "single", "batched")}
        engine = make_engine(url)
        with Session(engine) as session:
            report = ledger.reconcile(session)
            version = session.execute(text("SHOW server_version")).scalar_one()
        engine.dispose()

    result: dict[str, Any] = {
        "postgresql": version,
        "clients": args.clients,
        "seconds": args.seconds,
        "batch": args.batch,
        "grants_per_second": {k: round(v) for k, v in rates.items()},
        "ratio_to_baseline": {k: round(v / rates["baseline"], 2) for k, v in rates.items()},
        "reconciled": report.clean,
        "problems": report.problems[:5],
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rights.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
