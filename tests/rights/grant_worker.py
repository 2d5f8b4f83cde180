"""A worker for the crash test: grants keys w0…w{n-1} in batches of 25 (one transaction each) and
prints how many keys it has done after each commit. Run: python -m tests.rights.grant_worker URL
RIGHT_ID POOL_ID N."""

from __future__ import annotations

import sys

from sqlalchemy.orm import Session

from bankgrowth.operational import db
from bankgrowth.rights import ledger
from bankgrowth.rights.ledger import GrantRequest, Source
from bankgrowth.rights.models import Pool, Right


def main(url: str, right_id: int, pool_id: int, n: int) -> None:
    engine = db.make_engine(url)
    for start in range(0, n, 25):
        with Session(engine) as session, session.begin():
            right, pool = session.get_one(Right, right_id), session.get_one(Pool, pool_id)
            requests = [GrantRequest(f"w{i}", f"C{i}") for i in range(start, min(n, start + 25))]
            ledger.grant_many(
                session, right=right, pool=pool, requests=requests, source=Source("campaign", "crash"), actor="worker"
            )
        sys.stdout.write(f"{min(n, start + 25)}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
