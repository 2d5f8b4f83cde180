"""A worker for the crash test: executes a launched campaign in batches of 20 and prints the number
of customers treated after each committed batch. Run: python -m tests.campaigns.execute_worker
WAREHOUSE_URL OPERATIONAL_URL CODE."""

from __future__ import annotations

import sys

from sqlalchemy.orm import Session

from bankgrowth.campaigns import flows
from bankgrowth.operational import db
from bankgrowth.platform import service as platform_service
from bankgrowth.warehouse import engine as wh


def main(warehouse_url: str, url: str, code: str) -> None:
    engine = db.make_engine(url)
    con = wh.connect(warehouse_url)
    with Session(engine) as s:
        principal = platform_service.system_principal(s, source="worker")

    def progress(done: int, total: int) -> None:
        sys.stdout.write(f"{done}\n")
        sys.stdout.flush()

    flows.execute(engine, con, principal=principal, code=code, batch=20, progress=progress)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
