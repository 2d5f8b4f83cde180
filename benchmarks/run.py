"""Foundation benchmark: simulate a bank, then load it, against a raw-copy baseline in the same run.

    python -m benchmarks.run [--customers 2000000] [--out /tmp/bankgrowth-bench]

Each stage runs in its own process so its peak memory (ru_maxrss) is its own. Reported:
simulate throughput (transactions/s, customers/s) and peak memory; validated load throughput
(rows/s) and peak memory; and the ratio of the validated load's time to a plain DuckDB
``CREATE TABLE … AS SELECT * FROM read_parquet(…)`` of the same files (no validation), the fastest
way the engine itself has to ingest them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import time
from pathlib import Path
from typing import Any


def _stage(name: str, args: dict[str, Any], queue: Any) -> None:
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if name == "simulate":
        from bankgrowth.warehouse.simulator import SimulationConfig, simulate

        cfg = SimulationConfig(customers=args["customers"], seed=7)
        result = simulate(cfg, Path(args["out"]) / "sim")
        out["rows"] = result.rows
    elif name == "load":
        from bankgrowth.warehouse import engine, ingest

        con = engine.connect(f"duckdb:///{args['out']}/validated.duckdb")
        reports = [ingest.load_file(con, p) for p in ingest.expand_paths([Path(args["out"]) / "sim" / "bank"])]
        con.disconnect()
        out["rows"] = {r.table: r.read for r in reports}
        out["reconciles"] = all(r.reconciles for r in reports)
        out["quarantined"] = sum(r.quarantined for r in reports)
    elif name == "baseline":
        import duckdb

        con = duckdb.connect(f"{args['out']}/raw.duckdb")
        rows = {}
        for p in sorted((Path(args["out"]) / "sim" / "bank").glob("*.parquet")):
            con.execute(f"CREATE TABLE {p.stem} AS SELECT * FROM read_parquet('{p}')")
            rows[p.stem] = con.execute(f"SELECT count(*) FROM {p.stem}").fetchone()[0]  # type: ignore[index]
        con.close()
        out["rows"] = rows
    out["seconds"] = time.perf_counter() - started
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(out)


def run_stage(name: str, args: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_stage, args=(name, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bankgrowth-bench"))
    a = parser.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    a.out.mkdir(parents=True)
    args = {"customers": a.customers, "out": str(a.out)}
    sim = run_stage("simulate", args)
    total_rows = sum(sim["rows"].values())
    txns = sim["rows"]["transactions"]
    print(f"simulate: {a.customers:,} customers, {txns:,} transactions, {total_rows:,} rows in {sim['seconds']:.1f} s")
    print(
        f"  {txns / sim['seconds']:,.0f} transactions/s, {total_rows / sim['seconds']:,.0f} rows/s, "
        f"peak memory {sim['peak_rss_mib']:,.0f} MiB"
    )
    base = run_stage("baseline", args)
    load = run_stage("load", args)
    loaded_rows = sum(load["rows"].values())
    print(
        f"load (validated): {loaded_rows:,} rows in {load['seconds']:.1f} s = {loaded_rows / load['seconds']:,.0f} rows/s, "
        f"peak memory {load['peak_rss_mib']:,.0f} MiB, reconciles={load['reconciles']}, quarantined={load['quarantined']}"
    )
    print(
        f"baseline (DuckDB raw copy, no validation): {base['seconds']:.1f} s = {loaded_rows / base['seconds']:,.0f} rows/s, "
        f"peak memory {base['peak_rss_mib']:,.0f} MiB"
    )
    print(f"ratio validated load / raw copy: {load['seconds'] / base['seconds']:.2f}")
    results = {"customers": a.customers, "simulate": sim, "load": load, "baseline": base}
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/foundation.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
