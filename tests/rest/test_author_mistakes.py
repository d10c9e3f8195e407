"""Mistakes a new plugin author makes, each named where it is with what would be right:
an optional setting a template needs, made-up fields naming no fake value, hooks shadowed
by the standard library or naming something that cannot be called, and settings the
sandbox must fill by their type."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hub.config import load_config
from hub.errors import ConfigError
from hub.registry import Registry
from hub.rest import DeclarationError, declared, load_declaration
from hub.rest.sandbox import sandbox_settings
from tests.rest.kit import connect, declaration, pull, records, served

TENANT = """\
name = "acme"

[settings.tenant]
description = "The account's tenant"

[client]
base_url = "https://acme.example/api"
auth = "bearer"
headers = { "X-Tenant" = "{settings.tenant}" }

[streams.contacts]
entity = "contact"
path = "/contacts"
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(DeclarationError) as raised:
        load_declaration(path)
    return [str(p).replace(str(path), path.name) for p in raised.value.problems]


def test_an_optional_setting_a_template_needs_is_asked_for_by_the_connection(
    tmp_path: Path,
) -> None:
    (tmp_path / "acme.toml").write_text(TENANT)
    config = tmp_path / "crmhub.toml"
    config.write_text('[hub]\ndatabase = "x.db"\n\n[connections.crm]\nconnector = "acme.toml"\n')
    with pytest.raises(ConfigError) as raised:
        Registry.discover().validate(load_config(config))
    [problem] = raised.value.problems
    assert (problem.file, problem.line, problem.key) == (str(config), 4, "connections.crm")
    assert problem.message == (
        f"setting 'tenant' is not set, and the declaration fills it into "
        f"{tmp_path / 'acme.toml'}:9 [client.headers.X-Tenant]: set tenant in this "
        "connection, or give [settings.tenant] a default"
    )
    config.write_text(config.read_text() + 'tenant = "north"\n')
    Registry.discover().validate(load_config(config))  # set: nothing to say


def test_a_setting_used_only_in_the_base_url_may_give_way_to_base_url(tmp_path: Path) -> None:
    text = TENANT.replace('"https://acme.example/api"', '"https://{settings.tenant}.example"')
    path = tmp_path / "acme.toml"
    path.write_text(text.replace("headers = ", "# headers = "))
    settings = declared(path).Settings
    assert settings.model_validate({"base_url": "http://127.0.0.1:1"}).tenant is None
    with pytest.raises(ValueError, match=r"acme.toml:7 \[client.base_url\]"):
        settings.model_validate({})


def test_made_up_fields_name_fake_values_that_exist(tmp_path: Path) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(
        TENANT.replace("[settings.tenant]", "[settings.tenant]\nrequired = true")
        + '\n[sandbox.streams.contacts]\nfields = { tel = "{telephone}", mail = "{emial}" }\n'
    )
    valid = (
        "valid: {city}, {company}, {country}, {domain}, {email}, {first_name}, {index}, "
        "{last_name}, {name}, {phone}, {title}"
    )
    assert problems(path) == [
        "acme.toml:17 [sandbox.streams.contacts.fields.tel]: {telephone}: no such fake value "
        f"(did you mean {{phone}}? {valid})",
        "acme.toml:17 [sandbox.streams.contacts.fields.mail]: {emial}: no such fake value "
        f"(did you mean {{email}}? {valid})",
    ]


def test_required_settings_of_every_type_get_a_sandbox_value_of_that_type() -> None:
    settings = {
        "ratio": {"type": "float", "required": True},
        "archived": {"type": "bool", "required": True},
        "shard": {"type": "int", "required": True},
        "region": {"required": True},
        "tenant": {},
    }
    headers = {"X-Ratio": "{settings.ratio}", "X-Tenant": "{settings.tenant}"}
    spec = declaration(
        settings=settings,
        client={"base_url": "https://people.example/api", "auth": "bearer", "headers": headers},
    )
    cls = declared(spec)
    assert sandbox_settings(cls.declaration) == {
        "ratio": 1.0,
        "archived": False,
        "shard": 1,
        "region": "sandbox",
        "tenant": "sandbox",  # optional, but a header needs it
    }
    with served(cls, size=3) as (_, app, url):
        assert len(records(asyncio.run(pull(connect(cls, app, url))))) == 3


def test_a_hook_file_beside_the_declaration_wins_over_the_standard_library(
    tmp_path: Path,
) -> None:
    (tmp_path / "csv.py").write_text("def clean(record):\n    return {**record, 'clean': 1}\n")
    path = tmp_path / "acme.toml"
    path.write_text(TENANT + 'transform = "csv:clean"\n')
    assert declared(path).loaded.hooks["csv:clean"]({}) == {"clean": 1}


def test_a_hook_that_cannot_be_called_or_is_missing_is_named_with_what_there_is(
    tmp_path: Path,
) -> None:
    (tmp_path / "acme_hooks.py").write_text(
        "from pathlib import Path\n\nCLEAN = 'no'\n\ndef clean_record(r):\n    return r\n\n"
        "def tidy(r):\n    return r\n\nclass Pages:\n    pass\n"
    )
    path = tmp_path / "acme.toml"
    path.write_text(TENANT + 'transform = "acme_hooks:CLEAN"\n')
    assert problems(path) == [
        "acme.toml:14 [streams.contacts.transform]: hook 'acme_hooks:CLEAN' is a str, "
        "not a function or class: name something it can call"
    ]
    path.write_text(TENANT + 'transform = "acme_hooks:clean_recrod"\n')
    assert problems(path) == [
        "acme.toml:14 [streams.contacts.transform]: hook module 'acme_hooks' has no "
        "'clean_recrod' (it has: clean_record, Pages, tidy)"
    ]
