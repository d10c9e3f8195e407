"""Reference fields in mapping files: what loads, and what ``crmhub mapping check`` says."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app, commands  # noqa: F401  (registers the commands)
from hub.errors import MappingError
from hub.mapping import Mapping, load_mapping
from hub.relations import Reference

MAPPINGS = Path(__file__).parents[2] / "mappings"


def _field(**keys: object) -> dict[str, object]:
    return {"entity": "contact", "field": [{"canonical": "company", "remote": "co", **keys}]}


def test_a_reference_field_loads_with_its_target_key_and_creation() -> None:
    mapping = Mapping.from_dict(_field(reference="company", by="name", create_missing=True))
    assert mapping.references == {"company": Reference("company", "name", True)}
    many = Mapping.from_dict(
        {
            "entity": "activity",
            "field": [
                {"canonical": "contacts", "remote": "to", "reference": "contact", "by": "email"}
            ],
        }
    )
    assert many.references["contacts"] == Reference("contact", "email", False, many=True)


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({}, 'reference = "company" and by = one of "id", "domain", "name"'),
        ({"reference": "contact", "by": "email"}, "points at a company, not 'contact'"),
        ({"reference": "company", "by": "email"}, "not named by 'email'"),
        ({"reference": "company"}, "by is missing"),
        ({"reference": "company", "by": "id", "create_missing": True}, "cannot be created"),
        ({"reference": "company", "by": "name", "create_missing": "yes"}, "true or false"),
    ],
)
def test_unsound_references_are_named(keys: dict[str, object], words: str) -> None:
    with pytest.raises(MappingError) as caught:
        Mapping.from_dict(_field(**keys))
    assert words in str(caught.value)


def _through(**keys: object) -> dict[str, object]:
    field = {"canonical": "contacts", "remote": "ticket_id", "reference": "contact", **keys}
    return {"entity": "activity", "field": [field]}


def test_a_reference_read_through_another_record_loads() -> None:
    mapping = Mapping.from_dict(_through(via="ticket.requester", by="id", direction="pull"))
    ref = mapping.references["contacts"]
    assert ref == Reference("contact", "id", many=True, via="ticket.requester")
    assert (ref.names, ref.lookup) == ("ticket", "ticket.requester")


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({"via": "ticket.requester", "by": "id"}, 'is pulled only: set direction = "pull"'),
        ({"via": "ticket.subject", "by": "id", "direction": "pull"}, "not 'ticket.subject'"),
        ({"via": "ticket.organization", "by": "id", "direction": "pull"}, "valid: "),
        ({"via": "activity.contacts", "by": "id", "direction": "pull"}, "ticket.requester"),
        ({"via": "ticket.requester", "by": "email", "direction": "pull"}, "a ticket is not"),
        (
            {"via": "ticket.requester", "by": "id", "direction": "pull", "create_missing": True},
            "read through ticket.requester cannot be created",
        ),
    ],
)
def test_unsound_readings_through_another_record_are_named(
    keys: dict[str, object], words: str
) -> None:
    with pytest.raises(MappingError) as caught:
        Mapping.from_dict(_through(**keys))
    assert words in str(caught.value)


def test_reference_keys_on_an_ordinary_field_are_refused() -> None:
    data = {
        "entity": "contact",
        "field": [{"canonical": "email", "remote": "e", "reference": "company", "by": "name"}],
    }
    with pytest.raises(MappingError, match="'email' is not a reference field of contact"):
        Mapping.from_dict(data)


def test_invoice_contact_may_point_at_a_contact_or_a_company() -> None:
    for target, by in (("contact", "email"), ("company", "domain")):
        data = {
            "entity": "invoice",
            "field": [{"canonical": "contact", "remote": "c", "reference": target, "by": by}],
        }
        assert Mapping.from_dict(data).references["contact"].target == target


def test_every_default_mapping_of_a_reference_field_says_how(tmp_path: Path) -> None:
    for path in sorted(MAPPINGS.glob("*/*.toml")):
        load_mapping(path)  # raises on any problem


def test_mapping_check_names_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "people.toml"
    path.write_text(
        'entity = "contact"\n\n[[field]]\ncanonical = "company"\nremote = "org"\n'
        'reference = "company"\nby = "email"\n'
    )
    result = CliRunner().invoke(app, ["mapping", "check", str(path)])
    assert result.exit_code != 0
    assert "people.toml:7" in result.output and "field[1].by" in result.output
    assert "not named by 'email'" in result.output
