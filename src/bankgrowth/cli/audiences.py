"""Commands of audiences (客群圈选): define, count, preview, snapshot, diff, overlap, export, upload
lists, and the core segments. Each parses, calls one service, and renders."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bankgrowth.audiences import rules
from bankgrowth.audiences.schemas import AudienceCreate, Definition, ListUpload
from bankgrowth.audiences.segments import CORE_SEGMENTS
from bankgrowth.cli import render, tables
from bankgrowth.cli.common import console, fail, principal, read_json, settings, store, transaction, warehouse

audiences_app = typer.Typer(
    help="Audiences (客群圈选): rules, counts, previews, snapshots, overlaps, lists, the core segments.",
    no_args_is_help=True,
)
Org = Annotated[str | None, typer.Option("--org", help="Act within this org's subtree (default: HQ).")]
AsOf = Annotated[str | None, typer.Option("--as-of", help="Tag version day (default: the latest).")]
RuleText = Annotated[str | None, typer.Option("--rule", help="The rule as text, e.g. \"stage = 'super'\".")]
RuleFile = Annotated[Path | None, typer.Option("--json", help="The rule as a JSON file.")]


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise fail(f"--as-of: expected a date YYYY-MM-DD, found {value!r}") from None


def _definition(text: str | None, path: Path | None) -> dict[str, Any]:
    if (text is None) == (path is None):
        raise fail("give the rule with --rule TEXT or --json FILE (one of them)")
    if path is not None:
        return {"rule": read_json(path)}
    return {"text": text}


@audiences_app.command("list")
def list_cmd(org: Org = None) -> None:
    """Audiences I can use: my subtree's and HQ's."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    with transaction(s) as session:
        rows = [
            {"code": a.code, "name": a.name_zh, "kind": a.kind, "version": a.version, "org_id": a.org_id}
            for a in audiences.list_audiences(session, principal=principal(session, org))
        ]
    render.records(console, "audiences 客群", rows, s.tz)


@audiences_app.command("show")
def show_cmd(
    code: str, version: Annotated[int | None, typer.Option(help="Version (default: current).")] = None, org: Org = None
) -> None:
    """One audience: its definition (text and JSON) and its snapshots."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    with transaction(s) as session:
        who = principal(session, org)
        a = audiences.get_or_raise(session, principal=who, code=code)
        v = audiences.version_of(session, a, version)
        snaps = audiences.list_snapshots(session, principal=who, code=code)
    console.print(
        f"[bold]{a.code}[/] {a.name_zh} · {a.name_en}  ({a.kind}, version {v.version} of {a.version}, {a.org_id})"
    )
    if v.text is not None:
        console.print(f"rule: {v.text}", highlight=False)
        console.print_json(json.dumps(v.rule, ensure_ascii=False))
    else:
        left_out = len(v.unknown_ids or [])
        console.print(
            f"uploaded list: {v.list_size:,} customers; "
            f"{left_out} ids left out (not customers in scope, or not customer numbers)"
        )
    for snap in snaps:
        console.print(f"snapshot {snap.id}: version {snap.version}, as of {snap.as_of}, {snap.members:,} members")


@audiences_app.command("create")
def create_cmd(
    code: str,
    zh: Annotated[str, typer.Option("--zh", help="Chinese name.")],
    en: Annotated[str, typer.Option("--en", help="English name.")],
    rule: RuleText = None,
    rule_json: RuleFile = None,
    description: str = "",
    org: Org = None,
) -> None:
    """Define an audience by a rule; the rule is checked against the tag catalog."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    with warehouse(s) as con, transaction(s) as session:
        data = AudienceCreate(
            code=code, name_zh=zh, name_en=en, description=description, **_definition(rule, rule_json)
        )
        a = audiences.create(session, con, principal=principal(session, org), data=data)
        text = audiences.version_of(session, a).text
    console.print(f"created {a.code} (version 1): {text}", highlight=False)


@audiences_app.command("update")
def update_cmd(code: str, rule: RuleText = None, rule_json: RuleFile = None, org: Org = None) -> None:
    """A new version of an audience's rule (earlier versions and snapshots are kept)."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    with warehouse(s) as con, transaction(s) as session:
        a = audiences.update(
            session, con, principal=principal(session, org), code=code, data=Definition(**_definition(rule, rule_json))
        )
        version = a.version
    console.print(f"{code} is now at version {version}")


@audiences_app.command("count")
def count_cmd(
    code: Annotated[str | None, typer.Argument(help="An audience code; or give --rule.")] = None,
    rule: RuleText = None,
    as_of: AsOf = None,
    org: Org = None,
) -> None:
    """How many customers an audience (or a rule not saved yet) selects, in my scope."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    with warehouse(s) as con, transaction(s) as session:
        who = principal(session, org)
        if code is not None:
            c = audiences.count(session, con, principal=who, code=code, as_of=_day(as_of), timezone=s.timezone)
            console.print(
                f"{c.code} v{c.version} as of {c.as_of}: [bold]{c.customers:,}[/] customers ({c.milliseconds:.0f} ms)"
            )
        elif rule is not None:
            n, day = audiences.count_rule(
                session, con, principal=who, data=Definition(text=rule), as_of=_day(as_of), timezone=s.timezone
            )
            console.print(f"as of {day}: [bold]{n:,}[/] customers")
        else:
            raise fail("give an audience code or --rule TEXT")


@audiences_app.command("preview")
def preview_cmd(code: str, limit: int = 20, as_of: AsOf = None, org: Org = None) -> None:
    """A few members with their main tags (personal data masked)."""
    from bankgrowth.audiences import service as audiences
    from bankgrowth.insight.service import catalog_tags

    s = settings()
    with warehouse(s) as con, transaction(s) as session:
        rows = audiences.preview(
            session,
            con,
            principal=principal(session, org),
            code=code,
            limit=limit,
            as_of=_day(as_of),
            timezone=s.timezone,
        )
        units = {tag.name: tag.unit for tag in catalog_tags(con) if tag.unit}
    render.records(console, f"{code} · preview 预览", rows, s.tz, units)


@audiences_app.command("snapshot")
def snapshot_cmd(code: str, as_of: AsOf = None, org: Org = None) -> None:
    """Materialize the members now (definition version and tag day recorded)."""
    from sqlalchemy.orm import Session

    from bankgrowth.audiences import flows as audience_flows

    s = settings()
    with warehouse(s) as con, store(s) as eng, Session(eng, expire_on_commit=False) as session:
        snap = audience_flows.take_snapshot(
            session, con, principal=principal(session, org), code=code, as_of=_day(as_of), timezone=s.timezone
        )
    console.print(f"snapshot {snap.id} of {code}: version {snap.version}, as of {snap.as_of}, {snap.members:,} members")


@audiences_app.command("diff")
def diff_cmd(before: int, after: int, org: Org = None) -> None:
    """Who joined and who left between two snapshots."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    with warehouse(s) as con, transaction(s) as session:
        d = audiences.diff(session, con, principal=principal(session, org), before=before, after=after)
    console.print(
        f"snapshot {before}: {d.before:,} → snapshot {after}: {d.after:,}; "
        f"[green]+{d.only_after:,} joined[/], [red]-{d.only_before:,} left[/], {d.both:,} stayed"
    )
    if d.joined_sample:
        console.print(f"joined, e.g.: {d.joined_sample}")
    if d.left_sample:
        console.print(f"left, e.g.: {d.left_sample}")


@audiences_app.command("overlap")
def overlap_cmd(codes: list[str], as_of: AsOf = None, org: Org = None) -> None:
    """Customers shared by each pair of 2–5 audiences."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    with warehouse(s) as con, transaction(s) as session:
        counts, day = audiences.overlap(
            session, con, principal=principal(session, org), codes=codes, as_of=_day(as_of), timezone=s.timezone
        )
    table = Table(title=f"overlap 重叠 · as of {day}")
    table.add_column("")
    for code in codes:
        table.add_column(code, justify="right")
    for code, row in zip(codes, counts, strict=True):
        table.add_row(code, *[f"{n:,}" for n in row])
    tables.show(console, table)


@audiences_app.command("export")
def export_cmd(
    snapshot_id: int,
    out: Annotated[Path, typer.Argument(help="File to write: .csv or .parquet.")],
    columns: Annotated[str | None, typer.Option(help="Comma-separated tags to add.")] = None,
    pseudonymize: Annotated[bool, typer.Option("--pseudonymize", help="Keyed pseudonyms instead of ids.")] = False,
    org: Org = None,
) -> None:
    """Export a snapshot's members (audited)."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    with warehouse(s) as con, transaction(s) as session:
        n = audiences.export(
            session,
            con,
            principal=principal(session, org),
            snapshot_id=snapshot_id,
            path=out,
            columns=[c.strip() for c in columns.split(",")] if columns else (),
            pseudonymize_with=s.secret_key.get_secret_value() if pseudonymize else None,
        )
    console.print(f"wrote {n:,} members to {out}")


def _read_ids(path: Path) -> list[tuple[int, str]]:
    """(line, id): one id per line, or a CSV with a customer_id column; blank lines skipped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"{path}: cannot read: {exc}") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if lines and ("," in lines[0][1] or lines[0][1].strip().lower() == "customer_id"):
        header = next(csv.reader([lines[0][1]]))
        if "customer_id" not in header:
            raise fail(f"{path}: line {lines[0][0]}: expected a customer_id column, found {header}")
        column = header.index("customer_id")
        out = []
        for n, line in lines[1:]:
            row = next(csv.reader([line]))
            out.append((n, row[column] if column < len(row) else ""))
        return out
    return [(n, line.strip()) for n, line in lines]


@audiences_app.command("upload")
def upload_cmd(
    code: str,
    file: Annotated[Path, typer.Argument(help="Ids, one per line, or a CSV with a customer_id column.")],
    zh: Annotated[str, typer.Option("--zh", help="Chinese name (for a new list).")] = "上传名单",
    en: Annotated[str, typer.Option("--en", help="English name (for a new list).")] = "Uploaded list",
    org: Org = None,
) -> None:
    """Create an audience from an uploaded list of customer ids, or replace it with a new version.

    Ids that are not customers in your scope are listed, not dropped silently."""
    from bankgrowth.audiences import service as audiences
    from bankgrowth.errors import Invalid

    s = settings()
    ids = _read_ids(file)
    if not ids:
        raise fail(f"{file}: no ids")

    def not_numbers(malformed: list[tuple[int, str]]) -> list[str]:
        lines = [f"  {file}: line {ids[i - 1][0]}: expected a customer number, found {v!r}" for i, v in malformed[:20]]
        return lines + ([f"  … and {len(malformed) - 20:,} more"] if len(malformed) > 20 else [])

    try:
        with warehouse(s) as con, transaction(s) as session:
            up = audiences.upload(
                session,
                con,
                principal=principal(session, org),
                data=ListUpload(code=code, name_zh=zh, name_en=en, customer_ids=[i for _, i in ids]),
            )
            version = up.audience.version
    except Invalid as exc:
        if exc.code != "no_known_customers":
            raise
        malformed = [(m["position"], m["value"]) for m in exc.details.get("malformed", [])]
        raise fail("\n".join([exc.en, *not_numbers(malformed)])) from None
    repeated = ""
    if up.duplicates:
        what = "id" if up.duplicates == 1 else "ids"
        repeated = f"; {up.duplicates:,} repeated {what} counted once"
    console.print(f"{code} version {version}: {up.accepted:,} customers{repeated}")
    if up.malformed:
        n = len(up.malformed)
        what = "id is not a customer number" if n == 1 else "ids are not customer numbers"
        console.print(f"[yellow]{n:,} {what} (1 to 18 digits)[/]:")
        for line in not_numbers(up.malformed):
            console.print(line, highlight=False)
    if up.unknown:
        n = len(up.unknown)
        what = "id is not a customer" if n == 1 else "ids are not customers"
        console.print(f"[yellow]{n:,} {what} in scope[/]: {', '.join(up.unknown[:20])}")


@audiences_app.command("segments")
def segments_cmd(
    install: Annotated[bool, typer.Option("--install", help="Create the missing ones at HQ.")] = False,
) -> None:
    """The core segments (百类核心客群)."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    if install:
        with warehouse(s) as con, transaction(s) as session:
            created = audiences.install_core_segments(session, con, principal=principal(session, None))
        console.print(f"installed {len(created)} core segments" + (f": {', '.join(created)}" if created else ""))
        return
    table = Table(title="core segments 核心客群")
    for col in ("code", "名称", "name", "rule"):
        table.add_column(col)
    for seg in CORE_SEGMENTS:
        table.add_row(seg.code, seg.zh, seg.en, seg.rule)
    tables.show(console, table)


@audiences_app.command("schema")
def schema_cmd() -> None:
    """The JSON Schema of a rule."""
    console.print_json(json.dumps(rules.JSON_SCHEMA))


@audiences_app.command("lookalike")
def lookalike_cmd(
    code: Annotated[str, typer.Argument(help="The seed audience.")],
    target: Annotated[int, typer.Option(help="How many customers to find.")] = 10_000,
    save_as: Annotated[str | None, typer.Option("--save-as", help="Save them as a list audience.")] = None,
    org: Org = None,
) -> None:
    """Customers most like a seed audience (相似人群扩展), with the model's held-out quality."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    with warehouse(s) as con, transaction(s) as session, console.status("fitting seed against population …"):
        found = audiences.lookalike(
            session,
            con,
            principal=principal(session, org),
            code=code,
            target=target,
            save_as=save_as,
            timezone=s.timezone,
        )
    console.print(
        f"seed {found.seed:,}, population {found.population:,}: chose {found.target:,}. "
        f"Held-out seed members ranked in the top {found.target:,}: [bold]{found.holdout_recall:.1%}[/] "
        f"(lift {found.lift:.1f}× over random), AUC {found.holdout_auc:.3f}"
    )
    console.print("strongest features: " + ", ".join(f"{f} {w:+.2f}" for f, w in found.top_features))
    if save_as:
        console.print(f"saved as list audience {save_as}")


@audiences_app.command("clusters")
def clusters_cmd(
    k: Annotated[int, typer.Option(help="Number of clusters.")] = 6,
    code: Annotated[str | None, typer.Option("--audience", help="Cluster this audience's members only.")] = None,
    org: Org = None,
) -> None:
    """k-means on behaviour tags, with a profile of each cluster to name it (聚类分群)."""
    from bankgrowth.audiences import service as audiences

    s = settings()
    with warehouse(s) as con, transaction(s) as session, console.status(f"k-means, k={k} …"):
        result = audiences.clusters(
            session, con, principal=principal(session, org), k=k, code=code, timezone=s.timezone
        )
    table = Table(title=f"clusters 聚类 · {result.customers:,} customers, {len(result.features)} behaviour tags")
    for col in ("#", "customers", "share", "what sets it apart (standardized mean)", "main stages", "suggested name"):
        table.add_column(col)
    for cl in result.clusters:
        stages = sorted(cl.stages.items(), key=lambda kv: -kv[1])[:2]
        table.add_row(
            str(cl.number),
            f"{cl.customers:,}",
            f"{cl.share:.1%}",
            ", ".join(f"{f} {v:+.1f}" for f, v in cl.distinctive[:3]),
            ", ".join(f"{st} {n:,}" for st, n in stages),
            cl.suggested_name,
        )
    tables.show(console, table)
