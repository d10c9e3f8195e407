"""Loading declarations: every problem named with file, line and key; the valid choices
listed; the JSON Schema kept in step with the models."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.rest import DeclarationError, declared, load_declaration
from hub.rest.schema import SCHEMA_FILE, schema_text
from tests.rest.kit import declaration

GOOD = """\
name = "acme"

[settings.account]
required = true

[client]
base_url = "https://{settings.account}.acme.example/api"
auth = { kind = "api_key", header = "X-Key" }

[streams.contacts]
entity = "contact"
path = "/contacts"
paginator = "link"
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "acme.toml"
    path.write_text(text)
    with pytest.raises(DeclarationError) as raised:
        load_declaration(path)
    return [str(p).replace(str(path), "acme.toml") for p in raised.value.problems]


def test_a_good_declaration_loads_with_its_shorthands(tmp_path: Path) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(GOOD)
    cls = declared(path)
    assert cls.name == "acme" and cls.auth_kind == "api_key"
    assert cls.declaration.streams["contacts"].paginator.kind == "link"
    assert set(cls.Settings.model_fields) == {"account", "base_url"}
    with pytest.raises(ValueError, match="account"):
        cls.Settings.model_validate({})
    assert cls.mapping_dir == tmp_path / "mappings"


def test_unknown_keys_and_kinds_name_the_line_and_the_valid_choices(tmp_path: Path) -> None:
    text = GOOD.replace('paginator = "link"', 'paginator = { kind = "pages", size = 3 }')
    text = text.replace('path = "/contacts"', 'path = "/contacts"\nrecods = "$.data"')
    text = text.replace('auth = { kind = "api_key", header = "X-Key" }', 'auth = "bearr"')
    found = problems(tmp_path, text)
    assert found == [
        "acme.toml:8 [client.auth]: unknown auth kind 'bearr' "
        "(valid: none, api_key, bearer, basic, oauth2)",
        "acme.toml:13 [streams.contacts.recods]: unknown key 'recods' (valid: batch, body, "
        "create, delete, deletes, entity, errors, fetch, idempotency_header, incremental, "
        "limit_key, mapping, method, modified_at, paginator, params, path, primary_key, "
        "rate_limit, records, "
        "transform, update, upsert, version)",
        "acme.toml:14 [streams.contacts.paginator]: unknown paginator kind 'pages' "
        "(valid: none, offset, page_number, cursor, header_cursor, link, next_url, custom)",
    ]


def test_wrong_values_inside_tables_and_arrays_of_tables(tmp_path: Path) -> None:
    text = GOOD + (
        '\n[streams.contacts.update]\nmethod = "POKE"\n\n'
        '[[errors]]\nstatus = 409\nkind = "stale"\n\n'
        '[[errors]]\nstatus = "6xx"\nkind = "gone"\n'
    )
    found = problems(tmp_path, text)
    assert found[0].startswith("acme.toml:16 [streams.contacts.update.method]: Input should be")
    assert found[1].startswith("acme.toml:23 [errors[1].status]: '6xx': give a code")
    assert found[2].startswith("acme.toml:24 [errors[1].kind]: Input should be 'ok'")


def test_placeholders_paths_formats_hooks_and_names_are_checked(tmp_path: Path) -> None:
    text = GOOD.replace("{settings.account}", "{settings.acount}") + (
        'records = "$.data[?(@.live)]"\n'
        'modified_at = { field = "updated", format = "dd.mm.yyyy" }\n'
        'transform = "nowhere.hooks:fix"\n'
        '\n[streams.contacts.update]\npath = "/contacts/{ids}"\n'
        "\n[sandbox.streams.companies]\nsize = 3\n"
    )
    found = problems(tmp_path, text)
    assert found == [
        "acme.toml:7 [client.base_url]: {settings.acount}: no settings 'acount' "
        "(declared: account, base_url)",
        "acme.toml:14 [streams.contacts.records]: '$.data[?(@.live)]' is not a supported JSON "
        "path near '[?(@.live)]' (supported: $, $.key.key, $['key'], $.list[0], $.list[*])",
        "acme.toml:15 [streams.contacts.modified_at.format]: unknown time format 'dd.mm.yyyy' "
        "(valid: iso, epoch, epoch_ms, or a strptime pattern like '%Y-%m-%d %H:%M:%S')",
        "acme.toml:16 [streams.contacts.transform]: hook module 'nowhere.hooks' cannot be "
        "imported: No module named 'nowhere'",
        "acme.toml:19 [streams.contacts.update.path]: {ids}: unknown placeholder here "
        "(allowed: {data...}, {id...}, {settings...})",
        "acme.toml:21 [sandbox.streams.companies]: no stream named 'companies' (streams: contacts)",
    ]


def test_a_dict_declaration_names_its_label_and_keys() -> None:
    spec = declaration({"paginator": {"kind": "offset", "limt": 5}})
    with pytest.raises(DeclarationError) as raised:
        declared(spec, label="crmhub_acme:DECLARATION")
    [problem] = raised.value.problems
    assert problem.file == "crmhub_acme:DECLARATION" and problem.line is None
    assert problem.key == "streams.contacts.paginator.limt"
    assert isinstance(raised.value, ConfigError)


def test_consistency_rules_are_explained(tmp_path: Path) -> None:
    spec = declaration({"modified_at": None, "update": {"version": "body"}, "version": None})
    with pytest.raises(DeclarationError) as raised:
        declared(spec)
    messages = [p.message for p in raised.value.problems]
    assert messages == ["incremental reads need 'modified_at' (or a 'cursor_field')"]
    spec = declaration({"update": {"version": "if_match"}, "version": None})
    with pytest.raises(DeclarationError) as raised:
        declared(spec)
    assert [(p.key, p.message) for p in raised.value.problems] == [
        ("streams.contacts.update.version", "sending a version needs the stream's 'version'"),
        ("streams.contacts.delete.version", "sending a version needs the stream's 'version'"),
    ]


def test_hooks_next_to_a_local_declaration_are_found(tmp_path: Path) -> None:
    (tmp_path / "acme_hooks.py").write_text(
        "def fix(record):\n    record['name'] = record.get('name', '').upper()\n    return record\n"
    )
    path = tmp_path / "acme.toml"
    path.write_text(GOOD + 'transform = "acme_hooks:fix"\n')
    cls = declared(path)
    assert cls.loaded.hooks["acme_hooks:fix"]({"name": "ann"}) == {"name": "ANN"}


def test_the_json_schema_file_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "declaration.schema.json is out of date: run python -m hub.rest.schema"
    )


def test_a_wrong_kind_in_a_table_of_its_own_names_the_kind_line(tmp_path: Path) -> None:
    text = GOOD.replace(
        'paginator = "link"', '\n[streams.contacts.paginator]\nsize = 3\nkind = "pages"'
    )
    [found] = problems(tmp_path, text)
    assert found.startswith("acme.toml:16 [streams.contacts.paginator]: unknown paginator kind")
