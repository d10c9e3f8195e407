"""The typer application every command module registers on, and what they share."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from auth.credentials import VaultAuth
from hub.config import Config, load_config
from hub.errors import CrmhubError
from hub.runtime import Hub

T = TypeVar("T")

app = typer.Typer(
    name="crmhub",
    help="Keep one customer record in step across the tools a company already uses.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

ConfigOption = typer.Option(
    None, "--config", "-c", help="Configuration file (default: $CRMHUB_CONFIG or ./crmhub.toml)."
)
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")
ConnectionFilter = typer.Option(None, "--connection", help="Only this connection.")


def limit_option(default: int) -> Any:
    """``--limit/-n``: the same option on every listing."""
    return typer.Option(default, "--limit", "-n", min=1, help="Most rows to list.")


class State:
    config_path: Path | None = None


state = State()


@app.callback()
def _root(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Configuration file (default: $CRMHUB_CONFIG or ./crmhub.toml).",
    ),
) -> None:
    state.config_path = config


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` to stderr and return the exit to raise."""
    # escaped: problems name their key in brackets ("[connections.x.path]"), not markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def get_config() -> Config:
    return load_config(state.config_path)


@asynccontextmanager
async def open_hub() -> AsyncIterator[Hub]:
    """The configured hub (settings validated, store migrated), closed when the block ends."""
    hub = await Hub.open(get_config(), auth=VaultAuth())
    try:
        yield hub
    finally:
        await hub.close()


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body; crmhub errors become one clear message and exit code 1."""
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except CrmhubError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def print_table(table: Table, empty: str) -> None:
    """Print ``table``, or the sentence ``empty`` when it has no rows."""
    if table.row_count:
        console.print(table)
    else:
        console.print(empty, highlight=False, markup=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
