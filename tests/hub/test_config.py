"""crmhub.toml: settings from the environment without collisions, errors with full keys."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from auth.providers import resolve_for_config
from hub.cli import app, commands  # noqa: F401  (registers the commands)
from hub.config import load_config
from hub.errors import ConfigError
from hub.registry import Registry

FORM_KEY = "k8Jq3v0x2mZr4T1yLw7bN5cD"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment without any CRMHUB_ variable; set them on the result."""
    import os

    for name in [n for n in os.environ if n.startswith("CRMHUB_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crmhub.toml"
    path.write_text(text)
    return path


def test_a_connection_named_secret_never_reads_the_hubs_own_variables(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        f'[connections.secret]\nconnector = "webforms"\nkey = "{FORM_KEY}"\n',
    )
    env.setenv("CRMHUB_SECRET_KEY", "the-encryption-key-0123456789abcdef")
    env.setenv("CRMHUB_SECRET_KEY_FILE", "/somewhere/crmhub.key")
    env.setenv("CRMHUB_DATABASE_URL", "sqlite:///x.db")
    config = load_config(path)
    assert config.connection("secret").settings["key"] == FORM_KEY
    assert "key_file" not in config.connection("secret").settings
    assert config.warnings == []


def test_names_that_differ_only_in_dash_and_underscore_get_their_own_variables(
    tmp_path: Path, env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        '[connections.a-b]\nconnector = "csv"\npath = "dash.csv"\n\n'
        '[connections.a_b]\nconnector = "csv"\npath = "underscore.csv"\n',
    )
    # The old form names both: it is not read, and loading says what to set instead.
    caplog.set_level(logging.WARNING, "crmhub.config")
    env.setenv("CRMHUB_A_B_PATH", "old.csv")
    config = load_config(path)
    assert config.connection("a-b").settings["path"] == "dash.csv"
    assert config.connection("a_b").settings["path"] == "underscore.csv"
    [warning] = config.warnings
    assert "CRMHUB_A_B_PATH is not read" in warning
    assert "CRMHUB_CONNECTIONS__A_2D_B__PATH" in warning
    assert "CRMHUB_CONNECTIONS__A_B__PATH" in warning
    assert warning in caplog.text
    environ = {
        "CRMHUB_CONNECTIONS__A_2D_B__PATH": "from-env-dash.csv",
        "CRMHUB_CONNECTIONS__A_B__PATH": "from-env-underscore.csv",
    }
    config = load_config(path, environ)
    assert config.connection("a-b").settings["path"] == "from-env-dash.csv"
    assert config.connection("a_b").settings["path"] == "from-env-underscore.csv"


def newsletter(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        '[hub]\ndatabase = "hub.db"\n\n[connections.newsletter]\nconnector = "mailchimp"\n'
        'list_id = "abc123"\nwebhook_secret = "from-the-file"\n',
    )


def test_an_unrelated_variable_does_not_break_loading(
    tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    path = newsletter(tmp_path)
    env.setenv("CRMHUB_NEWSLETTER_API_KEY_UNUSED", "x")
    config = load_config(path)
    Registry.discover().validate(config)  # the connector's settings are untouched
    [warning] = config.warnings
    assert "CRMHUB_CONNECTIONS__NEWSLETTER__API_KEY_UNUSED" in warning


def test_an_override_of_an_unknown_setting_names_the_variable(tmp_path: Path) -> None:
    path = newsletter(tmp_path)
    variable = "CRMHUB_CONNECTIONS__NEWSLETTER__API_KEY_UNUSED"
    config = load_config(path, {variable: "x"})
    with pytest.raises(ConfigError) as caught:
        Registry.discover().validate(config)
    [problem] = caught.value.problems
    assert problem.file == f"environment variable {variable}" and problem.line is None
    assert problem.key == "connections.newsletter.api_key_unused"
    assert "unknown setting for connector 'mailchimp'" in problem.message
    assert "crmhub.toml" not in str(caught.value)


def test_an_override_replaces_the_files_value(tmp_path: Path) -> None:
    path = newsletter(tmp_path)
    config = load_config(path, {"CRMHUB_CONNECTIONS__NEWSLETTER__WEBHOOK_SECRET": "from-env"})
    settings = Registry.discover().settings_for(config, config.connection("newsletter"))
    assert settings.webhook_secret.get_secret_value() == "from-env"


def test_env_references_read_the_named_variable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[hub]\ndatabase = "env:HUB_DB"\n\n[connections.crm]\nconnector = "csv"\n'
        'path = "env:CRM_FILE"\n\n[connections.crm.oauth]\nclient_secret = "env:CRM_SECRET"\n',
    )
    environ = {"HUB_DB": "hub.db", "CRM_FILE": "crm.csv", "CRM_SECRET": "s3cret"}
    config = load_config(path, environ)
    assert config.hub.database == "hub.db"
    assert config.connection("crm").settings["path"] == "crm.csv"
    assert config.connection("crm").hub.oauth == {"client_secret": "s3cret"}


def test_bad_env_references_name_file_line_and_full_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[connections.crm]\nconnector = "csv"\npath = "env:CRM_FILE"\n'
        'mapping = "env:CRMHUB_SECRET_KEY"\n\n[connections.crm.oauth]\n'
        'client_id = "env:not a name"\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"CRMHUB_SECRET_KEY": "k"})
    found = {(p.line, p.key): p.message for p in caught.value.problems}
    assert found == {
        (3, "connections.crm.path"): "environment variable CRM_FILE is not set",
        (
            4,
            "connections.crm.mapping",
        ): "CRMHUB_SECRET_KEY is the hub's own variable, not a setting",
        (7, "connections.crm.oauth.client_id"): "'env:not a name' does not name an environment "
        "variable",
    }


def test_a_nested_override_reaches_the_oauth_table(tmp_path: Path) -> None:
    from tests.auth.test_flows import demo_connector

    connector = demo_connector("https://id.example.com")
    path = write(
        tmp_path,
        '[connections.crm-eu]\nconnector = "generic"\n\n[connections.crm-eu.oauth]\n'
        'client_id = "abc"\n',
    )
    environ = {"CRMHUB_CONNECTIONS__CRM_2D_EU__OAUTH__CLIENT_SECRET": "from-env"}
    config = load_config(path, environ)
    resolved = resolve_for_config(config, connector, "crm-eu")
    assert resolved.client_secret == "from-env" and resolved.client_id == "abc"
    # The old names are warned about, with the new one to use.
    config = load_config(path, {"CRMHUB_CRM_EU_CLIENT_SECRET": "old"})
    assert resolve_for_config(config, connector, "crm-eu").client_secret is None
    assert "CRMHUB_CONNECTIONS__CRM_2D_EU__OAUTH__CLIENT_SECRET" in config.warnings[0]


def test_an_ambiguous_override_is_refused(tmp_path: Path) -> None:
    # "a" and "a__b" are both valid names; A__B__PATH could be either's.
    path = write(
        tmp_path,
        '[connections.a]\nconnector = "csv"\npath = "a.csv"\n\n'
        '[connections.a__b]\nconnector = "csv"\npath = "ab.csv"\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"CRMHUB_CONNECTIONS__A__B__PATH": "x.csv"})
    assert str(caught.value) == (
        "environment variable CRMHUB_CONNECTIONS__A__B__PATH: names more than one connection "
        "(a, a__b); rename one"
    )


def test_error_keys_are_full_dotted_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[hub]\ndelete_guard_share = 3\n\n[connections.sales]\nconnector = "csv"\n'
        'path = "s.csv"\nprefer = ["nobody"]\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    keys = {(p.line, p.key) for p in caught.value.problems}
    assert keys == {(2, "hub.delete_guard_share"), (7, "connections.sales.prefer")}
    path = write(
        tmp_path,
        '[connections.sales]\nconnector = "csv"\npath = "s.csv"\npathh = "typo.csv"\n\n'
        '[connections.ghost]\nconnector = "nosuch"\n',
    )
    with pytest.raises(ConfigError) as caught:
        Registry.discover().validate(load_config(path, {}))
    text = str(caught.value)
    assert f"{path}:4 [connections.sales.pathh]: unknown setting" in text
    assert f"{path}:7 [connections.ghost.connector]: unknown connector 'nosuch'" in text


def test_a_missing_setting_says_what_the_connector_needs_it_for(tmp_path: Path) -> None:
    path = write(tmp_path, '[connections.support]\nconnector = "zendesk"\n')
    with pytest.raises(ConfigError) as caught:
        Registry.discover().validate(load_config(path, {}))
    assert str(caught.value) == (
        f"{path}:1 [connections.support.subdomain]: connector 'zendesk' needs this setting: "
        "The account's subdomain: acme for acme.zendesk.com"
    )


def test_without_a_configuration_file_commands_suggest_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRMHUB_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["runs"])
    assert result.exit_code == 1
    assert "no configuration file; create one with `crmhub init`" in result.output


def test_a_policy_for_a_field_the_connection_does_not_sync_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[connections.sales]\nconnector = "csv"\npath = "s.csv"\n'
        'field_policies = { phone = "manual", nosuchfield = "hub" }\n',
    )
    with pytest.raises(ConfigError) as caught:
        Registry.discover().validate(load_config(path, {}))
    [problem] = caught.value.problems
    assert (problem.line, problem.key) == (4, "connections.sales.field_policies.nosuchfield")
    assert problem.message.startswith("unknown field 'nosuchfield' for connection 'sales'")
    assert "email" in problem.message and "phone" in problem.message


def test_without_a_loadable_mapping_policies_may_name_core_and_custom_fields(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        '[connections.sales]\nconnector = "csv"\npath = "s.csv"\nmapping = "missing.toml"\n'
        'field_policies = { phone = "manual", "custom.tier" = "hub" }\n',
    )
    Registry.discover().validate(load_config(path, {}))
    path.write_text(path.read_text().replace('"custom.tier"', '"custom."'))
    with pytest.raises(ConfigError, match=r"valid: .*custom\.<name>"):
        Registry.discover().validate(load_config(path, {}))


def test_an_override_inside_a_value_that_is_not_a_table_names_the_variable(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[connections.sales]\nconnector = "csv"\npath = "s.csv"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"CRMHUB_CONNECTIONS__SALES__PATH__SUB": "x"})
    assert str(caught.value) == (
        "environment variable CRMHUB_CONNECTIONS__SALES__PATH__SUB [connections.sales.path.sub]"
        ": cannot be set: a part of the path before it is not a table"
    )
