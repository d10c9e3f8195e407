"""``crmhub entities``: list, search and show golden records, with their history."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import String, cast, func, or_, select

from hub.cli.app import console, limit_option, open_hub, print_json, print_table, run
from hub.cli.core_commands import JSON, entities_app
from hub.cli.ids import find_id, short_ids
from hub.relations.views import find_duplicates, relations_of
from hub.store.schema import change_log, entities, entity_keys, links, runs


@entities_app.callback()
def entities_list(
    ctx: typer.Context,
    entity_type: str = typer.Option(None, "--type", help="contact, company, ..."),
    limit: int = limit_option(50),
    json_out: bool = JSON,
) -> None:
    """List golden records (`crmhub entities search TEXT`, `crmhub entities show ID`)."""
    if ctx.invoked_subcommand:
        return
    _entities(None, entity_type, limit, json_out)


@entities_app.command("search")
def entities_search(
    query: str = typer.Argument(..., help="Text to find in any field (email, name, ...)."),
    entity_type: str = typer.Option(None, "--type", help="contact, company, ..."),
    limit: int = limit_option(50),
    json_out: bool = JSON,
) -> None:
    """Search golden records by any field's text."""
    _entities(query, entity_type, limit, json_out)


def _entities(query: str | None, entity_type: str | None, limit: int, json_out: bool) -> None:
    async def body() -> tuple[list[dict[str, Any]], dict[str, str]]:
        async with open_hub() as hub:
            q = select(entities).where(entities.c.deleted_at.is_(None)).limit(limit)
            if entity_type:
                q = q.where(entities.c.type == entity_type)
            if query:
                text = query.strip().lower()
                keyed = select(entity_keys.c.entity_id).where(entity_keys.c.value == text)
                q = q.where(
                    or_(
                        entities.c.id.in_(keyed),
                        entities.c.id.like(f"{text}%"),
                        func.lower(cast(entities.c.fields, String)).like(f"%{text}%"),
                    )
                )
            async with hub.store.connect() as db:
                rows = [dict(r._mapping) for r in await db.execute(q.order_by(entities.c.id))]
                return rows, await short_ids(db, entities.c.id, [r["id"] for r in rows])

    rows, short = run(body)
    if json_out:
        print_json(rows)
        return
    table = Table("id", "type", "email / name", "fields")
    table.columns[0].no_wrap = True
    for r in rows:
        f = r["fields"]
        label = f.get("email") or f.get("name") or f.get("number") or ""
        names = " ".join(str(f.get(k) or "") for k in ("first_name", "last_name")).strip()
        table.add_row(short[r["id"]], r["type"], f"{label} {names}".strip(), str(len(f)))
    what = f"{entity_type} records" if entity_type else "golden records"
    print_table(table, f"no {what} match {query!r}" if query else f"no {what} yet")


@entities_app.command("show")
def entities_show(
    entity_id: str = typer.Argument(..., help="The entity (the start of its id is enough)."),
    history: int = typer.Option(
        20, "--history", min=0, help="Most changes to show, newest first (0: none)."
    ),
    json_out: bool = JSON,
) -> None:
    """One golden record: its fields and where each came from, its links, its history."""

    async def body() -> dict[str, Any]:
        async with open_hub() as hub, hub.store.connect() as db:
            found = await find_id(db, entities.c.id, entity_id, "entity", "crmhub entities")
            ent = dict(
                (await db.execute(select(entities).where(entities.c.id == found))).one()._mapping
            )
            ent["links"] = [
                dict(r._mapping)
                for r in await db.execute(select(links).where(links.c.entity_id == found))
            ]
            logged = change_log.c.entity_id == found
            ent["history"] = [
                dict(r._mapping)
                for r in await db.execute(
                    select(change_log).where(logged).order_by(change_log.c.id.desc()).limit(history)
                )
            ]
            ent["history_total"] = await db.scalar(select(func.count()).where(logged))
            ent["relations"] = await relations_of(db, found, ent["type"], ent["fields"])
            ent["run_ids"] = await short_ids(
                db, runs.c.id, [h["run_id"] for h in ent["history"] if h["run_id"]]
            )
            return ent

    ent = run(body)
    short_runs = ent.pop("run_ids")
    if json_out:
        print_json(ent)
        return
    deleted = f" (deleted {_when(ent['deleted_at'])})" if ent["deleted_at"] else ""
    console.print(f"[bold]{ent['type']} {ent['id']}[/]{deleted}", highlight=False)
    table = Table("field", "value", "set by", "at")
    for name, value in sorted(ent["fields"].items()):
        prov = ent["provenance"].get(name) or [None, None]
        shown = json.dumps(value)
        if prov[2:] == ["unparsed"]:
            shown += " (kept as written: could not be parsed)"
        table.add_row(name, escape(shown), prov[0] or "(person)", _when(prov[1]))
    console.print(table)
    links_table = Table("connection", "stream", "remote id", "version")
    for lk in ent["links"]:
        links_table.add_row(
            lk["connection"], lk["stream"], lk["remote_id"], lk["remote_version"] or ""
        )
    print_table(links_table, "no links: no system holds this record")
    _print_relations(ent["relations"])
    if history:
        _print_history(ent, short_runs)


def _print_relations(relations: dict[str, Any]) -> None:
    """What the record points at, then what points at it (activities newest first)."""
    if relations["points_at"]:
        table = Table("field", "record", "id", title="points at")
        for r in relations["points_at"]:
            table.add_row(r["field"], r["label"], r["id"])
        console.print(table)
    titles = {"activity": "timeline, newest first", "contact": "people"}
    for kind, items in sorted(relations["pointed_at_by"].items()):
        table = Table("at", "record", "field", "id", title=titles.get(kind, f"{kind}s"))
        for r in items:
            at = r.get("occurred_at") or r.get("created_at") or r.get("issued_on")
            table.add_row(_when(at), r["label"], r["field"], r["id"])
        console.print(table)


def _when(at: Any) -> str:
    """A time as the tables show it: to the second, a space between date and time."""
    return str(at or "")[:19].replace("T", " ")


def _print_history(ent: dict[str, Any], short_runs: dict[str, str]) -> None:
    """The change log, newest first: one row per changed field."""
    table = Table("at", "by", "run", "field", "old", "new", title="history, newest first")
    for change in ent["history"]:
        by = change["connection"] or "(person)"
        run_id = short_runs.get(change["run_id"] or "", "")
        for field, (old, new) in sorted(change["changes"].items()):
            table.add_row(_when(change["at"]), by, run_id, field, json.dumps(old), json.dumps(new))
            by = run_id = ""
    older = ent["history_total"] - len(ent["history"])
    if not older:
        table.add_row(_when(ent["created_at"]), "", "", "(created)", "", "")
    console.print(table)
    if older:
        console.print(
            f"{older} older change(s) not shown: --history {ent['history_total']} shows all",
            highlight=False,
        )


@entities_app.command("duplicates")
def entities_duplicates(
    entity_type: str = typer.Option(None, "--type", help="contact or company."),
    json_out: bool = JSON,
) -> None:
    """Duplicates in one system, then golden records that are likely the same.

    First golden records linked to several records of one connection (same email twice in
    a file, ...: nothing is written to those records until one is removed or changed),
    then golden records that are likely one person or company (same phone, same name at
    the same company or e-mail domain; companies of the same name), for a person to merge
    with `crmhub entities merge`.
    """
    from hub.engine.duplicates import listing

    async def body() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
        async with open_hub() as hub, hub.store.connect() as db:
            copies = await listing(db)
            likely = await find_duplicates(db, entity_type)
            ids = [r["entity_id"] for r in copies] + [i for g in likely for i in g["ids"]]
            return copies, likely, await short_ids(db, entities.c.id, ids)

    copies, likely, short = run(body)
    if json_out:
        print_json(copies + likely)
        return
    table = Table("entity", "connection", "stream", "records")
    table.columns[0].no_wrap = True
    for r in copies:
        table.add_row(
            short[r["entity_id"]], r["connection"], r["stream"], ", ".join(r["remote_ids"])
        )
    print_table(table, "no golden record has several records in one connection")
    table = Table("type", "why", "records", title="likely the same, to merge")
    for group in likely:
        table.add_row(
            group["type"],
            f"{group['reason']}: {group['key']}",
            " ".join(short[i] for i in group["ids"]),
        )
    print_table(table, "no likely duplicates")
