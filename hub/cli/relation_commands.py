"""``crmhub entities merge``."""

from __future__ import annotations

import dataclasses
from typing import Any

import typer

from hub.cli.app import console, open_hub, print_json, run
from hub.cli.core_commands import JSON, entities_app
from hub.cli.ids import find_id
from hub.relations.merge import merge_entities
from hub.store.schema import entities


@entities_app.command("merge")
def entities_merge(
    keep: str = typer.Argument(..., help="The record that stays (the start of its id)."),
    other: str = typer.Argument(..., help="The record merged into it, then deleted."),
    take: list[str] = typer.Option(
        [], "--take", help="A field whose value comes from OTHER where both differ (repeat)."
    ),
    json_out: bool = JSON,
) -> None:
    """Merge two golden records that are the same person or company.

    KEEP takes OTHER's links, the references to it, its history and the values it lacks.
    A field both hold with different values keeps KEEP's value unless named by --take;
    the others are opened as conflicts (`crmhub conflicts`). Where both were in the same
    system, OTHER's copy there follows that connection's delete policy.
    """

    async def body() -> dict[str, Any]:
        async with open_hub() as hub:
            async with hub.store.connect() as db:
                keep_id = await find_id(db, entities.c.id, keep, "entity", "crmhub entities")
                other_id = await find_id(db, entities.c.id, other, "entity", "crmhub entities")
            result = await merge_entities(hub, keep_id, other_id, take=take)
            return dataclasses.asdict(result)

    result = run(body)
    if json_out:
        print_json(result)
        return
    console.print(f"merged {result['other']} into {result['keep']}", highlight=False)
    for f, (old, new) in sorted(result["taken"].items()):
        console.print(f"  {f}: {old!r} -> {new!r}", highlight=False, markup=False)
    if result["conflicts"]:
        console.print(
            f"  opened as conflicts: {', '.join(result['conflicts'])} (crmhub conflicts)",
            highlight=False,
        )
    console.print(
        f"  links moved: {result['links_moved']}, "
        f"records pointing at it moved: {result['references_moved']}",
        highlight=False,
    )
    for dup in result["duplicates"]:
        console.print(
            f"  duplicate in {dup['connection']} ({dup['remote_id']}): {dup['action']}",
            highlight=False,
        )
