"""plugins.md cannot drift from the code: every code block is run, parsed or compared, and
every field of the types an author touches is documented."""

from __future__ import annotations

import dataclasses
import json
import re
import string
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hub.config import load_config
from hub.connector import Change, Page, PushResult, RemoteRecord, Stream
from hub.errors import ErrorKind
from hub.registry import Registry
from hub.rest import DeclarationError, declared, load_declaration
from tests.plugins.test_new_connector import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins.md"
EXAMPLE = ROOT / "examples" / "crmhub-connector-people"
DECLARATION = EXAMPLE / "crmhub_connector_people" / "people.toml"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    text = PLUGINS.read_text(encoding="utf-8")
    return [body for lang, body in FENCE.findall(text) if lang == language]


def test_every_block_has_a_language_this_test_handles() -> None:
    languages = {lang for lang, _ in FENCE.findall(PLUGINS.read_text(encoding="utf-8"))}
    assert languages <= {"python", "toml", "sh", "json", "text"}, languages


@pytest.mark.parametrize("number", range(len(blocks("python"))))
def test_python_blocks_run(number: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # paths in the examples are relative to the repository
    monkeypatch.syspath_prepend(str(EXAMPLE))
    code = blocks("python")[number]
    exec(compile(code, f"plugins.md python block {number + 1}", "exec"), {"__name__": "doc"})


def test_toml_blocks_parse_and_declarations_load(tmp_path: Path) -> None:
    found = blocks("toml")
    assert found
    for body in found:
        data = tomllib.loads(body)
        if "streams" in data:
            declared(data, label="plugins.md", mapping_dir=tmp_path)
    example = DECLARATION.read_text(encoding="utf-8")
    assert example in found, "the worked example in plugins.md is people.toml as shipped"
    pyproject = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    entry = next(tomllib.loads(b) for b in found if "project" in tomllib.loads(b))
    assert (
        entry["project"]["entry-points"]["crmhub.connectors"]
        == pyproject["project"]["entry-points"]["crmhub.connectors"]
    )
    template = (ROOT / "hub/rest/templates/plugin_pyproject.toml").read_text(encoding="utf-8")
    values = {"name": "acme", "package": "crmhub_connector_acme", "title": "Acme"}
    generated = tomllib.loads(string.Template(template).substitute(values))
    ini = next(tomllib.loads(b) for b in found if "pytest" in tomllib.loads(b).get("tool", {}))
    assert ini["tool"]["pytest"] == generated["tool"]["pytest"]


def test_the_crmhub_toml_block_validates(tmp_path: Path) -> None:
    [body] = [b for b in blocks("toml") if "connections" in tomllib.loads(b)]
    (tmp_path / "directory").mkdir()
    (tmp_path / "directory" / "people.toml").write_text(DECLARATION.read_text())
    (tmp_path / "crmhub.toml").write_text(body)
    Registry.discover().validate(load_config(tmp_path / "crmhub.toml"))


def test_the_error_samples_are_what_crmhub_prints(tmp_path: Path) -> None:
    shape, later = blocks("text")
    text = DECLARATION.read_text(encoding="utf-8")
    broken = text.replace('kind = "page_number"', 'kind = "pagenumber"')
    broken = broken.replace('records = "$.data"', 'recods = "$.data"')
    assert _problems(tmp_path, broken) == shape.strip()
    template = text.replace('base_url = "{settings.base_url}"', 'base_url = "{settings.url}"')
    assert _problems(tmp_path, template) == later.strip()


def _problems(folder: Path, text: str) -> str:
    path = folder / "people.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DeclarationError) as raised:
        load_declaration(path)
    return "\n".join(str(p).replace(str(path), "people.toml") for p in raised.value.problems)


def test_the_json_record_is_one_the_example_reads() -> None:
    [body] = blocks("json")
    record = json.loads(body)
    cls = declared(DECLARATION)
    connector = cls(cls.Settings(), _context())
    read = connector.compiled(connector.streams()[0]).read(record)
    assert read is not None and read[1] is not None and read[1].version == "3"


def _context() -> Any:
    from hub.connector import ConnectorContext

    return ConnectorContext("doc")


def test_the_shell_block_is_what_the_plugin_test_runs() -> None:
    [first, *_] = blocks("sh")
    assert [line.strip() for line in first.strip().splitlines()] == COMMANDS


@pytest.mark.parametrize("kind", [Stream, RemoteRecord, Page, Change, PushResult])
def test_every_field_of_the_public_types_is_documented(kind: type) -> None:
    text = PLUGINS.read_text(encoding="utf-8")
    section = text[text.index(f"`{kind.__name__}(") :]
    section = section[: section.index("\n\n`") if "\n\n`" in section else len(section)]
    missing = [
        f.name
        for f in dataclasses.fields(kind)
        if f"| `{f.name}`" not in section
        and f"`{f.name}`," not in section
        and f", `{f.name}`" not in section
    ]
    assert not missing, f"plugins.md does not describe {kind.__name__}: {missing}"


def test_every_error_kind_is_documented() -> None:
    text = PLUGINS.read_text(encoding="utf-8")
    assert all(f"`{kind.value}`" in text for kind in ErrorKind)


def test_every_service_a_plugin_may_call_is_documented() -> None:
    from hub.services import ConnectionServices, SyncResult

    text = PLUGINS.read_text(encoding="utf-8")
    section = text[text.index("## B7. Webhooks") : text.index("## B8.")]
    members = [n for n in vars(ConnectionServices) if not n.startswith("_")] + ["connection"]
    missing = [n for n in members if f"`{n}" not in section and f", `{n}(" not in section]
    missing += [f.name for f in dataclasses.fields(SyncResult) if f"`{f.name}`" not in section]
    assert not missing, f"plugins.md (B7) does not describe: {missing}"
