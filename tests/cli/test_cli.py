"""The command line as a person uses it: one red line on error, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

BRANCHES = "branch_id,parent_id,level,name_zh,name_en,city,city_tier\nHQ,,hq,总行,Head Office,Beijing,1\n"


def run(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "BANKGROWTH_DATA_DIR": str(data_dir), "COLUMNS": "200", **env}
    return subprocess.run(
        [sys.executable, "-m", "bankgrowth", *args], capture_output=True, text=True, env=environment, timeout=300
    )


def test_simulate_load_status_round_trip(tmp_path: Path) -> None:
    # when
    sim = run(["simulate", "--customers", "800", "--out", str(tmp_path / "sim")], tmp_path)
    load = run(["load", str(tmp_path / "sim" / "bank")], tmp_path)
    again = run(["load", str(tmp_path / "sim" / "bank" / "customers.parquet")], tmp_path)
    status = run(["status"], tmp_path)
    # then
    assert sim.returncode == 0, sim.stderr
    assert "transactions" in sim.stdout and "ground truth" in sim.stdout
    assert load.returncode == 0, load.stderr
    assert load.stdout.count("✓") == 6
    assert "already loaded" in again.stdout
    assert status.returncode == 0
    assert "customers" in status.stdout and "800" in status.stdout
    assert "Insight: no tag version stored yet; `bankgrowth insight run` stores the first" in status.stdout
    loads = status.stdout.split("Recent loads (times in Asia/Shanghai)")[1]
    # the six files (the file again changed nothing), each by name with its folder below
    assert "loaded at" in loads and len(re.findall(r"│ \d{4}-\d\d-\d\d \d\d:\d\d │", loads)) == 6
    assert all(f"{name}.parquet" in loads for name in ("branches", "customers", "cards", "events", "transactions"))


def test_bad_rows_are_listed_and_the_command_still_succeeds(tmp_path: Path) -> None:
    # given
    (tmp_path / "branches.csv").write_text(BRANCHES + "B01,HQ,branch,分行,Branch,Hangzhou,seven\n")
    # when
    result = run(["load", str(tmp_path / "branches.csv")], tmp_path)
    # then
    assert result.returncode == 0, result.stderr
    assert "loaded 1" in result.stdout and "quarantined 1" in result.stdout
    assert "city_tier" in result.stdout and "seven" in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["load", "nowhere.csv"], {}, "nowhere.csv: no such file"),
        (["load", "{dir}/customers.csv"], {}, "missing column"),
        (["status"], {"BANKGROWTH_TIMEZONE": "Mars/Olympus"}, "unknown IANA timezone"),
        (["status"], {"BANKGROWTH_TIMEZONE": "Europe/Berlin"}, "daylight saving"),
        (["status"], {"BANKGROWTH_WAREHOUSE_URL": "mysql://x"}, "must start with duckdb:// or pyspark://"),
        (["simulate", "--customers", "0"], {}, "customers must be at least 1"),
        (["audiences", "create", "a", "--zh", "甲", "--en", "A", "--rule", "age >= 30"], {}, "`bankgrowth orgs sync`"),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], env: dict[str, str], message: str) -> None:
    # given
    (tmp_path / "customers.csv").write_text("customer_id,name\n1,x\n")
    args = [a.format(dir=tmp_path) for a in args]
    # when
    result = run(args, tmp_path, **env)
    # then
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_demo_prints_the_bank_summary(tmp_path: Path) -> None:
    # when
    result = run(["demo", "--customers", "1500"], tmp_path)
    rerun = run(["demo", "--customers", "1500"], tmp_path)
    # then
    assert result.returncode == 0, result.stderr
    for words in (
        "Bank summary",
        "customers",
        "bound",
        "transacting",
        "By institution",
        "wechat_pay",
        "Lifecycle",
        "超级用户",
        "Customer grid",
        "demo.activation",
        "demo.revenue",
        "reach 触达",
        "lift vs control",
        "CUPED",
        "interval ",  # how CUPED changed the interval: narrower, wider or as wide
        "super users 超级用户",
        "more than 20 transactions in 365 days, in any lifecycle stage",  # why it differs from the stage
        "Transactions by day",
        "vouchers redeemed",
    ):
        assert words in result.stdout
    # the stages day by day, from the day run before launch through the 14 days of the campaigns,
    # each night run
    assert "Lifecycle trend 生命周期趋势, 2026-10-31 – 2026-11-14 (15 days run)" in result.stdout, result.stdout
    assert "not run:" not in result.stdout
    assert "nightly insight runs of the 14 days" in result.stderr  # the steps, beside the progress bars
    # the demo starts each run from a fresh bank: the advance of the first run is not carried over
    assert rerun.returncode == 0, rerun.stderr
    assert "generated" in rerun.stdout and "demo.activation:" in rerun.stdout


def test_a_campaign_through_the_command_line(tmp_path: Path) -> None:
    # given: the demo's bank, audiences, voucher and budget
    assert run(["demo", "--customers", "1500"], tmp_path).returncode == 0
    maker, checker = {"LOGNAME": "maker", "USER": "maker"}, {"LOGNAME": "checker", "USER": "checker"}
    # when: a campaign from the Activation template, through maker-checker to its messages
    new = run(
        [
            "campaigns",
            "new",
            "activation",
            "--code",
            "cli.act",
            "--right",
            "demo.voucher5",
            "--pool",
            "demo.activation",
        ],
        tmp_path,
        **maker,
    )
    submit = run(["campaigns", "submit", "cli.act"], tmp_path, **maker)
    own = run(["campaigns", "approve", "cli.act"], tmp_path, **maker)
    approve = run(["campaigns", "approve", "cli.act", "--comment", "ok"], tmp_path, **checker)
    launch = run(["campaigns", "launch", "cli.act"], tmp_path, **maker)
    execute = run(["campaigns", "execute", "cli.act"], tmp_path, **maker)
    dnc = run(["campaigns", "dnc", "add", "1", "--reason", "complaint"], tmp_path)
    dnc_list = run(["campaigns", "dnc", "list", "1"], tmp_path)
    dispatch = run(["campaigns", "dispatch", "--campaign", "cli.act", "--at", "2099-01-05T10:00+08:00"], tmp_path)
    show = run(["campaigns", "show", "cli.act"], tmp_path)
    listing = run(["campaigns", "list", "--status", "running"], tmp_path)
    results = run(["campaigns", "results", "demo.activation"], tmp_path)
    removed = run(["campaigns", "dnc", "remove", "1"], tmp_path)
    again = run(["campaigns", "dnc", "remove", "1"], tmp_path)
    (tmp_path / "ids.csv").write_text("customer_id,note\n1,a\n2,b\nabc,typo\n\n999999999,gone\n1,again\n")
    upload = run(["audiences", "upload", "cli.list", str(tmp_path / "ids.csv")], tmp_path)
    (tmp_path / "typos.txt").write_text("x1\n\n12b\n")
    typos = run(["audiences", "upload", "cli.typos", str(tmp_path / "typos.txt")], tmp_path)
    # then
    assert new.returncode == 0 and "draft" in new.stdout, new.stderr
    assert submit.returncode == 0 and "pending_approval" in submit.stdout
    assert own.returncode == 1 and "maker" in own.stderr and "Traceback" not in own.stderr
    assert approve.returncode == 0 and "approved" in approve.stdout, approve.stderr
    assert launch.returncode == 0 and "held out as control" in launch.stdout, launch.stderr
    assert execute.returncode == 0 and "treated" in execute.stdout and "rights granted" in execute.stdout
    assert dnc.returncode == 0 and "complaint" in dnc_list.stdout
    assert dispatch.returncode == 0 and "sent (" in dispatch.stdout, dispatch.stderr
    assert "approved by system:checker" in show.stdout, show.stdout
    assert "outbox: delivered" in show.stdout  # the simulated channel's receipts came back
    assert "cli.act" in listing.stdout and "demo.activation" in listing.stdout
    assert results.returncode == 0 and "lift vs control" in results.stdout and "true" in results.stdout
    assert removed.returncode == 0 and again.returncode == 1 and "no do-not-contact entry" in again.stderr
    assert upload.returncode == 0 and "cli.list version 1: 2 customers; 1 repeated id counted once" in upload.stdout, (
        upload.stderr
    )
    assert f"{tmp_path / 'ids.csv'}: line 4: expected a customer number, found 'abc'" in upload.stdout
    assert "1 id is not a customer in scope: 999999999" in upload.stdout
    assert typos.returncode == 1 and "none of the 2 ids is a customer" in typos.stderr  # each typo named, even so
    assert f"{tmp_path / 'typos.txt'}: line 3: expected a customer number, found '12b'" in typos.stderr


def cells(output: str, label: str) -> list[str]:
    """The cells of the first table row of ``output`` holding the cell ``label``."""
    line = next(line for line in output.splitlines() if f" {label} " in line)
    return [cell.strip() for cell in line.split("│")[1:-1]]


def test_insight_commands(tmp_path: Path) -> None:
    # given: a loaded bank run on 2026-10-29, then to the last day with data, which catches up
    # the day between
    assert run(["simulate", "--customers", "600", "--out", str(tmp_path / "simulation")], tmp_path).returncode == 0
    assert run(["load", str(tmp_path / "simulation" / "bank")], tmp_path).returncode == 0
    first = run(["insight", "run", "--as-of", "2026-10-29"], tmp_path)
    second = run(["insight", "run"], tmp_path)
    # when
    again = run(["insight", "run"], tmp_path)  # the nightly job started twice: the log below shows no new run
    status = run(["status"], tmp_path)
    lifecycle = run(["insight", "lifecycle", "--since", "2026-10-30"], tmp_path)
    not_run = run(["insight", "lifecycle", "--since", "2026-10-01"], tmp_path)
    earlier = run(["insight", "run", "--as-of", "2026-10-30"], tmp_path)  # would replace 2026-10-31
    grid = run(["insight", "grid"], tmp_path)
    grid_not_run = run(["insight", "grid", "--as-of", "2026-10-01"], tmp_path)
    tag_not_run = run(["tags", "show", "age_band", "--as-of", "2026-10-01"], tmp_path)
    trend = run(["insight", "trend"], tmp_path)
    runs = run(["insight", "runs"], tmp_path)
    listing = run(["tags", "list"], tmp_path)
    detail = run(["tags", "show", "age_band"], tmp_path)
    unknown = run(["tags", "show", "no_such_tag"], tmp_path)
    typo = run(["tags", "show", "txn_count_7"], tmp_path)
    truth = run(["insight", "truth-check"], tmp_path)
    customer = run(["customer", "1"], tmp_path)
    future = run(["insight", "run", "--as-of", "2027-10-31"], tmp_path)  # a mistyped year
    replaced = run(["insight", "run", "--as-of", "2026-10-30", "--replace-later"], tmp_path)
    # then
    assert first.returncode == second.returncode == 0, second.stderr
    assert "insight run for 2026-10-31" in second.stdout and "stage changes since the day before" in second.stdout
    assert "no earlier version to compare stages with" in first.stdout  # not "0 stage changes"
    # each command is a new process: the day before's state is still recognised as current
    assert "(incremental)" in second.stdout
    assert "Caught up 2 days" in second.stdout
    assert [cells(second.stdout, d)[1] for d in ("2026-10-30", "2026-10-31")] == ["incremental"] * 2
    assert again.returncode == 0 and "2026-10-31 is stored and current" in again.stdout
    assert "nothing to run. `bankgrowth insight run --full` runs it again" in again.stdout
    assert "Insight: latest version 2026-10-31 (3 kept, 2026-10-29 to 2026-10-31), current; last run" in status.stdout
    assert ", incremental, " in status.stdout.split("Insight:")[1]
    assert "超级用户" in lifecycle.stdout and "Flows 2026-10-30" in lifecycle.stdout
    assert "Lifecycle 生命周期, 2026-10-31" in lifecycle.stdout  # the day shown is named
    assert "Lifecycle 生命周期, 2026-10-31" in second.stdout
    # a day never run: its stages are computed from the data, said so, and not stored
    assert not_run.returncode == 0, not_run.stderr
    assert "2026-10-01: no stored version; its stages are computed from the data" in not_run.stdout
    assert "Flows 2026-10-01 → 2026-10-31" in not_run.stdout
    # a run of an earlier day is refused while later versions are kept: it would replace them
    assert earlier.returncode == 1 and "Traceback" not in earlier.stderr
    assert "2026-10-30 is before the latest stored version: running it replaces 2026-10-31" in earlier.stderr
    assert "`bankgrowth insight lifecycle --as-of 2026-10-30`" in earlier.stderr and "--replace-later" in earlier.stderr
    assert "value tier" in grid.stdout and "unbound" in grid.stdout
    assert "Customer grid 客户宫格, 2026-10-31" in grid.stdout
    # the grid of a day never run is computed too, and said so
    assert grid_not_run.returncode == 0, grid_not_run.stderr
    assert "2026-10-01: no stored version; its stages are computed from the data" in grid_not_run.stdout
    assert "Customer grid 客户宫格, 2026-10-01 (stage × value tier)" in grid_not_run.stdout
    # a view that reads versions only: the error names the days kept and, since later versions
    # are kept, a way that replaces none
    assert tag_not_run.returncode == 1 and "Traceback" not in tag_not_run.stderr
    assert "no tag version for 2026-10-01 (kept: 2026-10-29, 2026-10-30, 2026-10-31)" in tag_not_run.stderr
    assert "`bankgrowth insight lifecycle --as-of 2026-10-01` (or `insight grid`) computes" in tag_not_run.stderr
    # the trend: a line per stage, its count on the first and the last day run
    assert "Lifecycle trend 生命周期趋势, 2026-10-29 – 2026-10-31 (3 days run)" in trend.stdout, trend.stdout
    for zh in ("超级用户", "流失预警", "未绑卡"):
        shown = cells(trend.stdout, zh)  # stage, 阶段, first day, last day, change, sparkline, min, max
        on_first, on_last = cells(first.stdout, zh)[2], cells(second.stdout, zh)[2]  # what each run printed
        assert shown[2:4] == [on_first, on_last], trend.stdout
        change = int(on_last.replace(",", "")) - int(on_first.replace(",", ""))
        assert shown[4] == (f"{change:+,}" if change else "0") and len(shown[5]) == 3
    # the run log, newest first: the incremental nights, then the first, full for want of a day before
    logged = [line for line in runs.stdout.splitlines() if line.startswith("│ 2026-")]
    assert [[cell.strip() for cell in line.split("│")[1:3]] for line in logged] == [
        ["2026-10-31", "incremental"],
        ["2026-10-30", "incremental"],
        ["2026-10-29", "full: no stored version of 2026-10-28"],
    ], runs.stdout
    assert "preferred_institution" in listing.stdout and "coverage" in listing.stdout
    assert "26-35" in detail.stdout
    assert unknown.returncode == 1 and "unknown tag(s): no_such_tag; see" in unknown.stderr  # nothing close
    assert typo.returncode == 1 and "did you mean txn_count_7 → txn_count_7d?" in typo.stderr
    assert truth.returncode == 0 and "agree" in truth.stdout
    assert customer.returncode == 0 and "****" in customer.stdout
    assert future.returncode == 1 and "the last transactions are of 2026-10-31" in future.stderr
    assert "--beyond-data" in future.stderr and "Traceback" not in future.stderr
    assert replaced.returncode == 0 and "replaced versions 2026-10-30, 2026-10-31" in replaced.stdout, replaced.stderr


def test_late_data_is_named_and_restated_on_request(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # given: a bank run on 2026-10-29 and 2026-10-30; then, with the file of 10-31, one of a
    # transaction of 10-29 that came late (a copy of the first, with a new id, at noon that day)
    assert run(["simulate", "--customers", "400", "--out", str(tmp_path / "sim")], tmp_path).returncode == 0
    assert run(["load", str(tmp_path / "sim" / "bank")], tmp_path).returncode == 0
    assert run(["insight", "run", "--as-of", "2026-10-29"], tmp_path).returncode == 0
    assert run(["insight", "run", "--as-of", "2026-10-30"], tmp_path).returncode == 0
    row = pq.read_table(tmp_path / "sim" / "bank" / "transactions.parquet").slice(0, 1)
    row = row.set_column(
        row.column_names.index("txn_id"), "txn_id", pa.array([10**12], row.schema.field("txn_id").type)
    )
    at = row.column_names.index("txn_at")
    noon = datetime.combine(date(2026, 10, 29), time(12), ZoneInfo("Asia/Shanghai"))
    pq.write_table(row.set_column(at, "txn_at", pa.array([noon], row.schema.field(at).type)), tmp_path / "late.parquet")
    assert run(["load", str(tmp_path / "late.parquet"), "--table", "transactions"], tmp_path).returncode == 0
    # when: the night's run told not to restate (the setting says to), the log, then a run as set
    usual = run(["insight", "run", "--no-restate"], tmp_path, BANKGROWTH_RESTATE_LATE_DATA="true")
    log = run(["insight", "runs"], tmp_path)
    restated = run(["insight", "run"], tmp_path, BANKGROWTH_RESTATE_LATE_DATA="true")
    after = run(["insight", "runs"], tmp_path)
    # then: the usual run names the stale versions and the command that runs them again
    assert usual.returncode == 0 and "the stored versions of 2026-10-29 to 2026-10-30 were computed" in usual.stdout
    assert "`bankgrowth insight run --restate` runs them again from 2026-10-29 on" in usual.stdout
    assert [cells(log.stdout, d)[6] for d in ("2026-10-29", "2026-10-30", "2026-10-31")] == ["stale", "stale", "kept"]
    # restating runs 10-29 again in full and the days after from it; nothing is stale after
    assert restated.returncode == 0, restated.stderr
    assert "restated 3 stored version(s), 2026-10-29 to 2026-10-31" in restated.stdout
    caught_up = restated.stdout.split("Caught up 3 days")[1]
    assert [cells(caught_up, d)[1][:4] for d in ("2026-10-29", "2026-10-30", "2026-10-31")] == [
        "full",
        "incr",
        "incr",
    ]
    assert "stale" not in after.stdout


def test_a_command_waits_for_a_warehouse_another_process_holds(tmp_path: Path) -> None:
    import threading
    import time

    from tests.conftest import held

    # given: a loaded bank, and a nightly run (another process) holding its warehouse for a while
    (tmp_path / "branches.csv").write_text(BRANCHES)
    assert run(["load", str(tmp_path / "branches.csv")], tmp_path).returncode == 0
    with held(tmp_path / "warehouse.duckdb") as holder:
        # when: one command may wait no time, another starts while it is held and is let wait
        refused = run(["status"], tmp_path, BANKGROWTH_WAREHOUSE_WAIT_SECONDS="0")
        threading.Thread(target=lambda: (time.sleep(2), holder.kill()), daemon=True).start()
        waited = run(["status"], tmp_path)
    # then: the first says who holds it and how to wait longer; the second says it waits, then runs
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"is in use by process {holder.pid}: try again" in refused.stderr
    assert "BANKGROWTH_WAREHOUSE_WAIT_SECONDS" in refused.stderr
    assert waited.returncode == 0, waited.stderr
    assert f"is in use by process {holder.pid}; waiting up to 60 s for it" in waited.stderr
    assert "branches" in waited.stdout


def test_insight_before_any_data_says_what_to_do(tmp_path: Path) -> None:
    result = run(["insight", "grid"], tmp_path)
    assert result.returncode == 1
    assert "run `bankgrowth insight run`" in result.stderr and "Traceback" not in result.stderr
    empty = run(["insight", "run"], tmp_path)
    assert empty.returncode == 1 and "no transactions yet" in empty.stderr


def test_first_run_admin_orgs_keys_reveal_export_and_audit(tmp_path: Path) -> None:
    # given: a small bank with a nightly run
    assert run(["simulate", "--customers", "500", "--out", str(tmp_path / "sim")], tmp_path).returncode == 0
    assert run(["load", str(tmp_path / "sim" / "bank")], tmp_path).returncode == 0
    assert run(["insight", "run"], tmp_path).returncode == 0
    # when: the first-run commands, as an operator would type them
    admin = run(["admin", "create", "--username", "root"], tmp_path, BANKGROWTH_ADMIN_PASSWORD="first-admin-pw")
    sync = run(["orgs", "sync"], tmp_path)
    key = run(["keys", "create", "--app", "mobile-bank", "--channel", "app"], tmp_path)
    rotate = run(["keys", "rotate", "1"], tmp_path)
    revoke = run(["keys", "revoke", "1"], tmp_path)
    masked = run(["customer", "1"], tmp_path)
    clear = run(["customer", "1", "--reveal"], tmp_path)
    export = run(["tags", "export", str(tmp_path / "tags.parquet"), "--pseudonymize", "--org", "B01"], tmp_path)
    (tmp_path / "grades.csv").write_text("customer_id,value\n1,A\n2,B\n99999999,C\n")
    grades = ["tags", "import", str(tmp_path / "grades.csv"), "--name", "kyc_grade", "--zh", "风险等级", "--en", "KYC"]
    imported = run(grades, tmp_path)
    shown = run(["tags", "show", "kyc_grade"], tmp_path)
    log = run(["audit", "--limit", "20"], tmp_path)
    # then
    for r in (admin, sync, key, rotate, revoke, masked, clear, export, imported, shown, log):
        assert r.returncode == 0, r.stderr
    assert "loaded 2" in imported.stdout and "exists in customers" in imported.stdout and "99999999" in imported.stdout
    assert "风险等级" in shown.stdout
    assert f"from {tmp_path / 'grades.csv'}: 2 customers, 1 line left out" in shown.stdout.replace("\n", "")
    assert "created administrator root" in admin.stdout and "orgs: 32 created" in sync.stdout
    assert "key (shown once): bgk_" in key.stdout and "key (shown once): bgk_" in rotate.stdout
    assert "****" in masked.stdout and "****" not in clear.stdout.splitlines()[0]
    import pyarrow.parquet as pq

    exported = pq.read_table(tmp_path / "tags.parquet")
    assert "customer_id" not in exported.column_names and exported.num_rows > 0
    for action in (
        "users.create",
        "orgs.sync",
        "api_keys.create",
        "api_keys.rotate",
        "api_keys.revoke",
        "customers.reveal",
        "tags.export",
        "tags.import",
    ):
        assert action in log.stdout, action
    assert log.stdout.count("customers.reveal") == 1  # the masked view is not a reveal


def test_a_store_behind_the_code_is_one_red_line(tmp_path: Path) -> None:
    # given: a store whose schema is at a revision the code does not have
    import sqlite3

    assert run(["db", "upgrade"], tmp_path).returncode == 0
    with sqlite3.connect(tmp_path / "operational.sqlite") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000'")
    # when
    r = run(["keys", "list"], tmp_path)
    # then
    assert r.returncode == 1 and "bankgrowth db upgrade" in r.stderr and "Traceback" not in r.stderr


def test_serve_answers_health_and_login(tmp_path: Path) -> None:
    import socket
    import time

    import httpx

    # given
    env = {**os.environ, "BANKGROWTH_DATA_DIR": str(tmp_path), "BANKGROWTH_ADMIN_PASSWORD": "first-admin-pw"}
    assert (
        run(["admin", "create", "--username", "root"], tmp_path, BANKGROWTH_ADMIN_PASSWORD="first-admin-pw").returncode
        == 0
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "bankgrowth", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                health = httpx.get(f"{base}/health")
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        # when
        login = httpx.post(f"{base}/api/v1/auth/login", json={"username": "root", "password": "first-admin-pw"})
        me = httpx.get(f"{base}/api/v1/auth/me", headers={"Authorization": f"Bearer {login.json()['token']}"})
        docs = httpx.get(f"{base}/openapi.json")
    finally:
        server.terminate()
        _, err = server.communicate(timeout=20)
    # then
    assert health.json()["status"] == "ok"
    assert me.json()["roles"] == ["admin"] and me.json()["org_id"] == "HQ"
    assert "/api/v1/users" in docs.json()["paths"]
    assert '"route": "/api/v1/auth/me"' in err  # JSON request log lines


def test_help_and_the_command_tree_load_no_engine() -> None:
    # given: the command line asked for help, as a person exploring it does
    code = (
        "import sys\n"
        "sys.argv = ['bankgrowth', 'insight', '--help']\n"
        "from bankgrowth.cli.main import run\n"
        "try:\n"
        "    run()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('ibis', 'duckdb', 'sqlalchemy', 'scipy', 'pandas', 'pyspark', 'fastapi')\n"
        "print('loaded:', *(m for m in heavy if m in sys.modules))\n"
    )
    # when
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    # then: each command imports the services it calls, so help answers without importing them
    assert "nightly tag run" in result.stdout, result.stderr
    assert result.stdout.splitlines()[-1] == "loaded:", result.stdout


def test_every_command_is_listed_with_a_one_line_summary() -> None:
    # given: the command tree as a group's help lists it (the first paragraph of each command's help)
    import inspect

    import typer.main

    from bankgrowth.cli.main import app

    def summaries(group: Any, path: str) -> Iterator[tuple[str, str]]:
        for name, command in getattr(group, "commands", {}).items():
            yield f"{path} {name}", inspect.cleandoc(command.help or "").split("\n\n")[0]
            yield from summaries(command, f"{path} {name}")

    # then: none is empty or broken over lines mid-sentence in the listing
    listed = dict(summaries(typer.main.get_command(app), "bankgrowth"))
    assert len(listed) > 60
    assert {path: text for path, text in listed.items() if not text or "\n" in text} == {}
