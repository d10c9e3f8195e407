"""The docs stay true: the plugin guide documents every member of the connector interface,
and every `crmhub ...` command the README shows exists with the options it names, and runs
(against a temporary configuration, where running it is safe)."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from hub.cli import (
    app,
    commands,  # noqa: F401  (registers the commands)
)
from hub.connector import Connector

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CLI = get_command(app)
# Commands that serve until stopped, reach the network, or need a person's data: their
# options are checked, and they are run with --help.
HELP_ONLY = {
    ("up",),
    ("sandbox",),
    ("demo",),
    ("connect",),
    ("disconnect",),
    ("runs", "approve"),
    ("conflicts", "resolve"),
    ("entities", "merge"),
    ("slack", "test"),
}
# Commands whose exit status says what they found (1: something needs a person), as a
# monitor reads it: they run, and exit 1 with their report passes, an error does not.
REPORT_BY_EXIT = {("status",)}


def test_plugins_md_names_every_connector_member() -> None:
    text = (ROOT / "plugins.md").read_text(encoding="utf-8")
    members = {
        name
        for name, _ in inspect.getmembers(Connector)
        if not name.startswith("_") and name not in {"connection"}
    }
    members |= set(Connector.__annotations__) - {"connection"}
    missing = sorted(m for m in members if f"`{m}" not in text)
    assert not missing, f"plugins.md does not document: {', '.join(missing)}"


def test_readme_names_every_command() -> None:
    names = sorted(CLI.commands)  # type: ignore[attr-defined]
    missing = [n for n in names if f"crmhub {n}" not in README]
    assert not missing, f"README.md does not document: {', '.join(missing)}"


# -- the commands the README shows -----------------------------------------------------------


def readme_commands(text: str = README) -> list[str]:
    """Every `crmhub ...` the README shows: lines of code blocks (``$ `` and
    ``.venv/bin/`` dropped, comments cut) and inline code, in order, each once."""
    found: list[str] = []
    prose: list[str] = []
    in_block = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        if in_block or line.startswith("    "):
            command = re.sub(r"^(\$ )?(\.venv/bin/)?", "", line.strip())
            if command.startswith("crmhub "):
                found.append(re.sub(r"\s+#.*$", "", command))
        else:
            prose.append(line)
    for span in re.findall(r"`([^`]+)`", "\n".join(prose)):
        command = re.sub(r"^\.venv/bin/", "", " ".join(span.split())).replace("\\|", "|")
        if command.startswith("crmhub ") or command == "crmhub":
            found.append(command)
    return list(dict.fromkeys(found))


def test_the_readme_commands_are_found() -> None:
    shown = readme_commands()
    assert "crmhub inbox --source shop -n 200" in shown
    assert "crmhub entities [--type T] [-n N] [--json]" in shown
    assert "crmhub --config demo/crmhub.toml entities" in shown
    assert "crmhub keys rotate" in shown  # an inline span broken over two lines
    assert len(shown) > 50


def tokens(command: str) -> list[str]:
    """The words of a shown command, optional parts kept: ``[--json]`` -> ``--json``."""
    words = shlex.split(command.replace("[", " ").replace("]", " "))[1:]
    return [w.removesuffix("...") for w in words if w.strip(".")]


def _param(command: Any, option: str) -> Any:
    for param in command.params:
        if option in (*param.opts, *param.secondary_opts):
            return param
    return None


def resolve(command: str) -> tuple[tuple[str, ...], Any, list[str]]:
    """The command path, the click command, and the words: an error naming what does not
    exist (a subcommand, an option of that command)."""
    current: Any = CLI  # typer's own copy of click: its groups are known by `commands`
    path: list[str] = []
    words = tokens(command)
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            takes_value = False
            for alternative in word.split("|"):
                if not alternative.startswith("-"):
                    continue
                name = alternative.split("=", 1)[0]
                param = _param(current, name)
                where = " ".join(["crmhub", *path])
                assert param is not None, f"{command!r}: `{where}` has no option {name}"
                is_flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
                takes_value = not is_flag and "=" not in alternative
            i += 2 if takes_value else 1
            continue
        if hasattr(current, "commands"):
            subcommands = current.commands
            assert word in subcommands, (
                f"{command!r}: `crmhub {' '.join(path)}` has no command {word!r}"
                f" (it has: {', '.join(sorted(subcommands))})"
            )
            current = subcommands[word]
            path.append(word)
        i += 1
    return tuple(path), current, words


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_exists_with_its_options(command: str) -> None:
    resolve(command)


def test_a_documented_command_that_does_not_exist_is_caught() -> None:
    with pytest.raises(AssertionError, match="has no command 'TEXT'"):
        resolve("crmhub entities TEXT")
    with pytest.raises(AssertionError, match="has no option --nosuch"):
        resolve("crmhub runs --nosuch")


# -- running them ------------------------------------------------------------------------------

CONFIG = """\
[hub]
database = "crmhub.db"

[connections.sales]
connector = "csv"
path = "sales.csv"

[connections.newsletter]
connector = "mailchimp"
list_id = "a1b2c3d4e5"
api_base = "http://127.0.0.1:9/3.0/"
webhook_secret = "a-webhook-secret-0123456789"

[connections.signup]
connector = "webforms"
direction = "pull"
key = "signup-form-key-0123456789"
form_secret = "signup-form-secret-0123456789"

[connections.contact-form]
connector = "webforms"
direction = "pull"
key = "contact-form-key-0123456789"
form_secret = "contact-form-secret-0123456789"
"""
runner = CliRunner()


def invoke(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A configuration with the README's connections, synced once, and 42 deliveries."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "crmhub.toml").write_text(CONFIG)
    (folder / "sales.csv").write_text(
        "email,first_name\nann@example.com,Ann\nbob@example.org,Bob\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRMHUB_CONFIG", str(folder / "crmhub.toml"))
        mp.chdir(folder)
        code, out = invoke(["sync", "sales"])
        assert code == 0, out
        asyncio.run(_deliveries(folder / "crmhub.db", 42))
    yield folder


async def _deliveries(db: Path, n: int) -> None:
    from hub.inbox import Inbox
    from hub.store import Store

    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    try:
        inbox = Inbox(store)
        for i in range(n):
            await inbox.add("newsletter", f"delivery-{i}", b"{}", kind="profile")
    finally:
        await store.close()


async def _dead_letter(db: Path) -> str:
    """Make one owed write a dead letter; its id."""
    from sqlalchemy import select, update

    from hub.store import Store
    from hub.store.schema import outbox

    store = await Store.open(f"sqlite+aiosqlite:///{db}")
    try:
        async with store.begin() as conn:
            row = (await conn.execute(select(outbox.c.id).limit(1))).scalar_one()
            await conn.execute(update(outbox).where(outbox.c.id == row).values(status="dead"))
        return str(row)
    finally:
        await store.close()


def runnable(command: str, folder: Path) -> list[str]:
    """``command`` as arguments that can run: the configuration replaced by the temporary
    one, each placeholder by a value that exists there, alternatives by the last one."""
    path, _, words = resolve(command)
    if not path or path[:2] in HELP_ONLY or path[:1] in HELP_ONLY:
        return [*path, "--help"]
    args: list[str] = []
    for i, word in enumerate(words):
        before = words[i - 1] if i else ""
        word = word.split("|")[-1]
        if before in ("--config", "-c"):
            word = str(folder / "crmhub.toml")
        elif re.fullmatch(r"[A-Z][A-Z_]*", word):
            word = _value(word, before, path, folder)
        args.append(word)
    return args


def _value(placeholder: str, before: str, path: tuple[str, ...], folder: Path) -> str:
    if placeholder == "FILE":
        if before in ("-o", "--output"):
            return str(folder / "snippet.html")
        return str(ROOT / "mappings" / "csv" / "contacts.toml")
    if placeholder == "ID" and path[0] == "entities":
        out = invoke(["entities", "--json"])[1]
        return str(json.loads(out)[0]["id"])
    if placeholder == "ID" and path[0] == "outbox":
        return asyncio.run(_dead_letter(folder / "crmhub.db"))
    if placeholder == "S":
        return "ok" if path[0] == "runs" else "dead"
    if placeholder == "D":  # new-connector --dir: a plugin package is written there
        return str(folder / "plugins")
    values = {"C": "sales", "CONNECTION": "sales", "N": "5", "DAYS": "30", "T": "contact"}
    values |= {"TEXT": "ann", "FORM": "signup", "ID": "1", "NAME": "acme"}
    values |= {"PATH_OR_NAME": "zendesk"}  # a declared connector that ships with crmhub
    assert placeholder in values, f"no value for the placeholder {placeholder} of {path}"
    return values[placeholder]


def test_every_readme_command_runs(hub_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRMHUB_CONFIG", str(hub_folder / "crmhub.toml"))
    monkeypatch.chdir(hub_folder)
    failed: list[str] = []
    ran: list[list[str]] = []
    for command in readme_commands():
        args = runnable(command, hub_folder)
        if args[0] == "init":  # in an empty folder: it writes crmhub.toml there
            with pytest.MonkeyPatch.context() as elsewhere:
                elsewhere.delenv("CRMHUB_CONFIG")
                elsewhere.chdir(hub_folder.parent)
                code, out = invoke(args)
        else:
            code, out = invoke(args)
        ran.append(args)
        if code == 1 and tuple(args[:1]) in REPORT_BY_EXIT and "error:" not in out:
            continue
        if code != 0:
            failed.append(f"{command!r} as {shlex.join(args)}: exit {code}\n{out}")
    assert not failed, "\n\n".join(failed)
    executed = [a for a in ran if "--help" not in a]
    assert len(executed) > 30, executed
