"""The mapping engine: paths, every transform both ways, record semantics, file checks."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import MappingError, Problem
from hub.mapping import (
    MISSING,
    BuildContext,
    FieldProblem,
    Mapping,
    NoParams,
    PathError,
    RecordMappingError,
    RemotePath,
    Step,
    TransformError,
    check_mapping_file,
    load_mapping,
    register_transform,
    registry,
    transform_names,
)

# -- helpers ---------------------------------------------------------------------------


def one(transforms: list[Any], **extra: Any) -> Mapping:
    """A mapping of remote ``v`` <-> ``custom.v`` through ``transforms``."""
    field = {"canonical": "custom.v", "remote": "v", "transforms": transforms, **extra}
    return Mapping.from_dict({"entity": "contact", "field": [field]})


def pull(transforms: list[Any], value: Any, *, phone_region: str | None = None) -> Any:
    field = {"canonical": "custom.v", "remote": "v", "transforms": transforms}
    mapping = Mapping.from_dict({"entity": "contact", "field": [field]}, phone_region=phone_region)
    return mapping.to_canonical({"v": value})["custom.v"]


def push(transforms: list[Any], value: Any) -> Any:
    return one(transforms).to_remote({"custom.v": value})["v"]


def pull_error(transforms: list[Any], value: Any) -> str:
    errors: list[FieldProblem] = []
    assert one(transforms).to_canonical({"v": value}, errors) == {}
    assert len(errors) == 1
    return str(errors[0])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(dedent(text).lstrip(), encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> list[Problem]:
    with pytest.raises(MappingError) as caught:
        load_mapping(write(tmp_path, text))
    return caught.value.problems


MAILCHIMP = """
    entity = "contact"

    [[field]]
    canonical = "email"
    remote = "email_address"
    transforms = ["email"]

    [[field]]
    canonical = ["first_name", "last_name"]
    remote = "merge_fields.NAME"
    transforms = ["trim", "split_name"]

    [[field]]
    canonical = "phone"
    remote = "merge_fields.PHONE"
    transforms = [{ name = "phone", region = "US" }]

    [[field]]
    canonical = "city"
    remote = "addresses.0.city"

    [[field]]
    canonical = "consent"
    remote = "status"
    transforms = [{ name = "map", values = { subscribed = true, unsubscribed = false } }]

    [[field]]
    canonical = "tags"
    remote = "tags"
    transforms = [{ name = "split", sep = ";" }]

    [[field]]
    canonical = "consent_at"
    remote = "timestamp_opt"
    transforms = ["datetime"]
    direction = "pull"

    [[field]]
    canonical = "custom.source"
    remote = "source"
    direction = "push"
"""


@pytest.fixture
def mailchimp(tmp_path: Path) -> Mapping:
    return load_mapping(write(tmp_path, MAILCHIMP))


# -- remote paths ----------------------------------------------------------------------


def test_paths_parse_keys_indexes_and_quoted_keys() -> None:
    assert RemotePath.parse("email").segments == ("email",)
    assert RemotePath.parse("merge_fields.FNAME").segments == ("merge_fields", "FNAME")
    assert RemotePath.parse("addresses.0.city").segments == ("addresses", 0, "city")
    assert RemotePath.parse('meta."a.b".c').segments == ("meta", "a.b", "c")
    assert RemotePath.parse('fields."360"').segments == ("fields", "360")
    assert RemotePath.parse("First Name").segments == ("First Name",)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("a..b", "empty segment"),
        (".a", "empty segment"),
        ("a.", "ends with a dot"),
        ('a."b', "unterminated quote"),
        ('a.""', "empty quoted key"),
        ('a."b"c', "expected '.'"),
        ('a.b"c', "quote inside"),
        ("a. b", "surrounding spaces"),
    ],
)
def test_bad_paths_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(PathError, match=words):
        RemotePath.parse(text)


def test_reading_tells_missing_from_emptied() -> None:
    read = RemotePath.parse("a.b").reader()
    assert read({"a": {"b": 1}}) == 1
    assert read({"a": {}}) is MISSING
    assert read({}) is MISSING
    assert read({"a": None}) is None  # the remote says there is no "a" at all
    items = RemotePath.parse("xs.1.v").reader()
    assert items({"xs": [{"v": 1}, {"v": 2}]}) == 2
    assert items({"xs": [{"v": 1}]}) is None
    assert items({"xs": {"1": {"v": 3}}}) == 3  # digits also work as object keys
    with pytest.raises(PathError, match="holds a str"):
        read({"a": "text"})
    errors: list[FieldProblem] = []
    mapping = Mapping.from_dict(
        {"entity": "contact", "field": [{"canonical": "city", "remote": "a.b"}]}
    )
    assert mapping.to_canonical({"a": "text"}, errors) == {}
    assert errors[0].value is None
    assert "a holds a str, not an object or list" in errors[0].message


def test_writing_builds_objects_and_lists() -> None:
    target: dict[str, Any] = {}
    RemotePath.parse("addresses.1.city").put(target, "Paris")
    RemotePath.parse("addresses.1.zip").put(target, "75001")
    RemotePath.parse("merge_fields.FNAME").put(target, "Ada")
    RemotePath.parse('fields."7"').put(target, "x")
    assert target == {
        "addresses": [None, {"city": "Paris", "zip": "75001"}],
        "merge_fields": {"FNAME": "Ada"},
        "fields": {"7": "x"},
    }


# -- text and structure transforms -----------------------------------------------------


def test_text_transforms_pull_and_push_unchanged() -> None:
    assert pull(["trim"], "  Ada  ") == "Ada"
    assert pull(["trim"], "   ") is None
    assert pull(["trim", "lower"], " ADA@X.COM ") == "ada@x.com"
    assert pull(["upper"], "gb") == "GB"
    assert pull(["title"], "ada lovelace") == "Ada Lovelace"
    assert pull(["trim"], 12345) == "12345"
    assert pull(["split", "upper"], "a,b") == ["A", "B"]
    assert push(["trim", "lower"], "ada@x.com") == "ada@x.com"
    assert "expected text, got dict" in pull_error(["lower"], {"x": 1})


def test_split_name_and_join_name() -> None:
    mapping = Mapping.from_dict(
        {
            "entity": "contact",
            "field": [
                {
                    "canonical": ["first_name", "last_name"],
                    "remote": "name",
                    "transforms": ["split_name"],
                },
                {"canonical": "custom.full", "remote": ["fn", "ln"], "transforms": ["join_name"]},
            ],
        }
    )
    got = mapping.to_canonical({"name": "  Ada   King Lovelace ", "fn": " Ada ", "ln": "Lovelace"})
    assert got == {
        "first_name": "Ada",
        "last_name": "King Lovelace",
        "custom.full": "Ada Lovelace",
    }
    assert mapping.to_canonical({"name": "Lovelace, Ada"})["first_name"] == "Ada"
    assert mapping.to_canonical({"name": "Cher"}) == {"first_name": "Cher", "last_name": None}
    assert mapping.to_canonical({"name": None}) == {"first_name": None, "last_name": None}
    assert mapping.to_canonical({"ln": "Lovelace"}) == {"custom.full": "Lovelace"}
    assert mapping.to_remote({"first_name": "Ada", "last_name": "Lovelace"}) == {
        "name": "Ada Lovelace"
    }
    assert mapping.to_remote({"custom.full": "Ada King Lovelace"}) == {
        "fn": "Ada",
        "ln": "King Lovelace",
    }
    assert mapping.to_remote({"custom.full": None}) == {"fn": None, "ln": None}


def test_map_both_ways_with_defaults_and_case() -> None:
    table = {"name": "map", "values": {"1": "open", "2": "closed", "3": "closed"}}
    assert pull([table], "2") == "closed"
    assert pull([table], 1) == "open"  # remote numbers match their text keys
    assert push([table], "closed") == "2"  # the first remote value listed wins
    assert "not in the map" in pull_error([table], "9")
    assert "'1', '2', '3'" in pull_error([table], "9")
    assert pull([{**table, "default": "other"}], "9") == "other"
    errors: list[FieldProblem] = []
    assert one([table]).to_remote({"custom.v": "pending"}, errors=errors) == {}
    assert "no remote value" in str(errors[0])
    assert push([{**table, "push_default": "1"}], "pending") == "1"
    cased = {"name": "map", "values": {"Yes": True}, "ignore_case": True}
    assert pull([cased], "YES") is True
    assert push([cased], True) == "Yes"
    booleans = {"name": "map", "values": {"true": "on", "false": "off"}}
    assert pull([booleans], True) == "on"


def test_default_fills_blanks_and_optionally_missing() -> None:
    assert pull([{"name": "default", "value": "unknown"}], "") == "unknown"
    assert pull(["trim", {"name": "default", "value": "unknown"}], "  ") == "unknown"
    assert pull([{"name": "default", "value": "unknown"}], "x") == "x"
    assert one([{"name": "default", "value": "u"}]).to_canonical({}) == {}
    filled = one([{"name": "default", "value": "u", "missing": True}])
    assert filled.to_canonical({}) == {"custom.v": "u"}
    assert push([{"name": "default", "value": "u"}], "x") == "x"


def test_split_and_join_lists() -> None:
    assert pull(["split"], "a, b,,c ") == ["a", "b", "c"]
    assert pull([{"name": "split", "sep": ";"}], "a;b") == ["a", "b"]
    assert pull(["split"], ["x", 2]) == ["x", "2"]
    assert pull(["split"], " , ") is None  # nothing left is an empty field
    assert push([{"name": "split", "sep": ";"}], ["a", "b"]) == "a;b"
    assert pull([{"name": "join", "sep": " | "}], ["a", "b"]) == "a | b"
    assert push([{"name": "join", "sep": "|"}], "a|b") == ["a", "b"]


# -- value formats ---------------------------------------------------------------------


def test_phone_to_e164_with_region_fallbacks() -> None:
    assert pull([{"name": "phone", "region": "US"}], "(415) 555-0100") == "+14155550100"
    assert pull(["phone"], "+1 415 555 0100") == "+14155550100"
    assert pull(["phone"], "020 7946 0958", phone_region="GB") == "+442079460958"
    own_region = [{"name": "phone", "region": "US"}]  # the transform's region wins
    assert pull(own_region, "415 555 0100", phone_region="GB") == "+14155550100"
    assert "no region set" in pull_error(["phone"], "020 7946 0958")
    assert "bad phone number 'call me'" in pull_error(
        [{"name": "phone", "region": "US"}], "call me"
    )
    assert pull([{"name": "phone", "keep_invalid": True}], " call me ") == "call me"
    assert push(["phone"], "+14155550100") == "+14155550100"
    international = {"name": "phone", "format": "international"}
    assert push([international], "+14155550100") == "+1 415-555-0100"


def test_email_normalised() -> None:
    assert pull(["email"], "  Ada@Example.COM ") == "ada@example.com"
    assert pull(["email"], "ada@bücher.de") == "ada@xn--bcher-kva.de"
    assert "bad email address 'nope'" in pull_error(["email"], "nope")
    assert pull([{"name": "email", "keep_invalid": True}], " nope ") == "nope"
    assert push(["email"], "ada@example.com") == "ada@example.com"


def test_date_from_common_and_own_formats() -> None:
    assert pull(["date"], "2024-05-01") == "2024-05-01"
    assert pull(["date"], "2024-05-01T23:30:00-05:00") == "2024-05-01"
    assert pull(["date"], "01.05.2024") == "2024-05-01"
    assert pull(["date"], "1 May 2024") == "2024-05-01"
    assert pull(["date"], "May 1, 2024") == "2024-05-01"
    own = {"name": "date", "format": "%d/%m/%Y"}
    assert pull([own], "10/12/1815") == "1815-12-10"
    assert push([own], "1815-12-10") == "10/12/1815"
    assert push(["date"], "1815-12-10") == "1815-12-10"
    assert "bad date '31/31/2020'" in pull_error([own], "31/31/2020")
    assert "bad date '01/02/2020'" in pull_error(["date"], "01/02/2020")  # ambiguous: no guess


def test_datetime_to_utc() -> None:
    assert pull(["datetime"], "2024-05-01T14:30:00+02:00") == "2024-05-01T12:30:00Z"
    assert pull(["datetime"], "2024-05-01T12:30:00Z") == "2024-05-01T12:30:00Z"
    assert pull(["datetime"], "2024-05-01 12:30:00.250") == "2024-05-01T12:30:00.250000Z"
    assert pull(["datetime"], "Wed, 01 May 2024 13:30:00 +0100") == "2024-05-01T12:30:00Z"
    assert pull(["datetime"], 1714566600) == "2024-05-01T12:30:00Z"
    assert pull(["datetime"], "1714566600.5") == "2024-05-01T12:30:00.500000Z"
    london = {"name": "datetime", "timezone": "Europe/London"}
    assert pull([london], "2024-05-01 13:30") == "2024-05-01T12:30:00Z"
    assert pull([london], "2024-01-01 13:30") == "2024-01-01T13:30:00Z"
    own = {"name": "datetime", "format": "%d/%m/%Y %H:%M", "timezone": "Europe/London"}
    assert pull([own], "01/05/2024 13:30") == "2024-05-01T12:30:00Z"
    assert push([own], "2024-05-01T12:30:00Z") == "01/05/2024 13:30"
    millis = {"name": "datetime", "unit": "ms"}
    assert pull([millis], 1714566600000) == "2024-05-01T12:30:00Z"
    assert push([millis], "2024-05-01T12:30:00Z") == 1714566600000
    assert push(["datetime"], "2024-05-01T12:30:00Z") == "2024-05-01T12:30:00Z"
    assert "bad date-time 'soon'" in pull_error(["datetime"], "soon")


def test_money_and_decimal() -> None:
    assert pull(["money"], "12.5") == "12.50"
    assert pull(["money"], "$1,234.567") == "1234.57"
    assert pull(["money"], "€ 0.005") == "0.01"  # half up, not to even
    assert pull(["money"], 12) == "12.00"
    assert pull(["money"], 12.5) == "12.50"
    assert pull(["money"], "-0.00") == "0.00"
    assert pull([{"name": "money", "decimal_comma": True}], "1.234,5") == "1234.50"
    assert pull([{"name": "money", "places": 0}], "12.5") == "13"
    assert "bad number '12,5'" in pull_error(["money"], "12,5")  # no silent 125
    assert "bad number 'abc'" in pull_error(["money"], "abc")
    assert "bad number True" in pull_error(["money"], True)
    assert push(["money"], "12.50") == "12.50"
    assert push([{"name": "money", "output": "number"}], "12.50") == 12.5
    assert push([{"name": "money", "output": "number"}], "12.00") == 12
    assert pull(["decimal"], "12.500") == "12.5"
    assert pull(["decimal"], "100") == "100"
    assert pull(["decimal"], "1E+2") == "100"
    assert pull([{"name": "decimal", "places": 3}], 0.1) == "0.100"
    assert "bad number 'NaN'" in pull_error(["decimal"], "NaN")


def test_bool_words_and_remote_spelling() -> None:
    for word in ("yes", "Y", "true", "1", "On", 1, True):
        assert pull(["bool"], word) is True
    for word in ("no", "N", "false", "0", "OFF", 0, False):
        assert pull(["bool"], word) is False
    assert "bad yes/no value 'maybe'" in pull_error(["bool"], "maybe")
    assert push(["bool"], True) is True
    spelled = {"name": "bool", "yes": "subscribed", "no": "pending"}
    assert pull([spelled], "Subscribed") is True
    assert push([spelled], False) == "pending"


# -- records: presence, directions, only, errors -----------------------------------------

RECORD = {
    "email_address": " Ada@Example.com ",
    "merge_fields": {"NAME": "Ada Lovelace", "PHONE": "(415) 555-0100"},
    "addresses": [{"city": "London"}],
    "status": "subscribed",
    "tags": "vip;beta",
    "timestamp_opt": "2024-05-01T14:30:00+02:00",
    "source": "ignored on pull",
}


def test_to_canonical_maps_pull_fields(mailchimp: Mapping) -> None:
    assert mailchimp.to_canonical(RECORD) == {
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "phone": "+14155550100",
        "city": "London",
        "consent": True,
        "tags": ["vip", "beta"],
        "consent_at": "2024-05-01T12:30:00Z",
    }


def test_missing_is_unknown_and_emptied_is_none(mailchimp: Mapping) -> None:
    sparse = {"email_address": "a@b.co", "merge_fields": {"PHONE": ""}}
    assert mailchimp.to_canonical(sparse) == {"email": "a@b.co", "phone": None}
    emptied: dict[str, Any] = {"email_address": None, "tags": "  ", "addresses": []}
    assert mailchimp.to_canonical(emptied) == {"email": None, "tags": None, "city": None}
    assert mailchimp.to_canonical({}) == {}


def test_directions(mailchimp: Mapping) -> None:
    assert "custom.source" not in mailchimp.to_canonical(RECORD)
    assert mailchimp.pull_fields == mailchimp.fields - {"custom.source"}
    assert mailchimp.push_fields == mailchimp.fields - {"consent_at"}
    remote = mailchimp.to_remote({"consent_at": "2024-05-01T12:30:00Z", "custom.source": "web"})
    assert remote == {"source": "web"}


def test_round_trip_reproduces_mapped_fields(mailchimp: Mapping) -> None:
    canonical = mailchimp.to_canonical(RECORD)
    remote = mailchimp.to_remote(canonical)
    assert remote == {
        "email_address": "ada@example.com",
        "merge_fields": {"NAME": "Ada Lovelace", "PHONE": "+14155550100"},
        "addresses": [{"city": "London"}],
        "status": "subscribed",
        "tags": "vip;beta",
    }
    again = mailchimp.to_canonical(remote)
    assert again == {k: v for k, v in canonical.items() if k in mailchimp.push_fields}


def test_only_limits_push_but_uses_all_inputs(mailchimp: Mapping) -> None:
    hub = {"first_name": "Ada", "last_name": "Byron", "email": "a@b.co", "city": "Paris"}
    assert mailchimp.to_remote(hub, only={"last_name"}) == {"merge_fields": {"NAME": "Ada Byron"}}
    assert mailchimp.to_remote(hub, only=["city", "email"]) == {
        "email_address": "a@b.co",
        "addresses": [{"city": "Paris"}],
    }
    assert mailchimp.to_remote(hub, only=[]) == {}
    assert mailchimp.to_remote({"last_name": "Byron"}) == {"merge_fields": {"NAME": "Byron"}}
    assert mailchimp.to_remote({"email": None}) == {"email_address": None}


def test_field_errors_fail_the_field_not_the_record(mailchimp: Mapping) -> None:
    bad = {**RECORD, "email_address": "not-an-address", "timestamp_opt": "31/31/2020"}
    with pytest.raises(RecordMappingError) as caught:
        mailchimp.to_canonical(bad)
    error = caught.value
    assert [(p.field, p.remote, p.value) for p in error.problems] == [
        ("email", "email_address", "not-an-address"),
        ("consent_at", "timestamp_opt", "31/31/2020"),
    ]
    assert "field 'consent_at' (remote 'timestamp_opt'): bad date-time '31/31/2020'" in str(error)
    assert error.values["phone"] == "+14155550100"
    assert "email" not in error.values
    errors: list[FieldProblem] = []
    values = mailchimp.to_canonical(bad, errors)
    assert values == error.values
    assert len(errors) == 2


def test_values_that_are_not_scalars_are_field_problems() -> None:
    mapping = one([])
    errors: list[FieldProblem] = []
    assert mapping.to_canonical({"v": {"nested": 1}}, errors) == {}
    assert "a dict is not a field value" in str(errors[0])
    assert mapping.to_canonical({"v": [1, 2]}, errors) == {}
    assert "add the 'split' transform" in str(errors[1])
    assert mapping.to_canonical({"v": ["a"]}) == {"custom.v": ["a"]}
    assert mapping.to_canonical({"v": 3.5}) == {"custom.v": 3.5}


def test_normalize_applies_hub_side_transforms(mailchimp: Mapping) -> None:
    assert mailchimp.normalize("phone", "+1 415 555 0100") == "+14155550100"
    assert mailchimp.normalize("email", " Ada@Example.COM") == "ada@example.com"
    assert mailchimp.normalize("first_name", "  Ada ") == "Ada"
    assert mailchimp.normalize("consent", True) is True  # value maps are left alone
    assert mailchimp.normalize("tags", "a; b") == ["a", "b"]
    assert mailchimp.normalize("consent_at", "2024-05-01T14:30:00+02:00") == (
        "2024-05-01T12:30:00Z"
    )
    assert mailchimp.normalize("city", "") is None
    assert mailchimp.normalize("company", " untouched ") == " untouched "
    with pytest.raises(TransformError, match="bad phone number"):
        mailchimp.normalize("phone", "call me")


def test_mapping_facts(mailchimp: Mapping, tmp_path: Path) -> None:
    assert mailchimp.entity == "contact"
    assert mailchimp.source == tmp_path / "mapping.toml"
    assert mailchimp.remote_paths["first_name"] == "merge_fields.NAME"
    assert mailchimp.remote_paths["custom.source"] == "source"
    assert "source" not in mailchimp.remote_fields
    assert "merge_fields.PHONE" in mailchimp.remote_fields


@settings(max_examples=60, deadline=None)
@given(
    first=st.text(st.characters(categories=["L"]), min_size=1, max_size=8),
    last=st.lists(st.text(st.characters(categories=["L"]), min_size=1, max_size=8), max_size=3),
    amount=st.decimals(min_value=-(10**9), max_value=10**9, places=2),
)
def test_round_trips_hold_for_generated_values(first: str, last: list[str], amount: Any) -> None:
    mapping = Mapping.from_dict(
        {
            "entity": "contact",
            "field": [
                {
                    "canonical": ["first_name", "last_name"],
                    "remote": "n",
                    "transforms": ["split_name"],
                },
                {"canonical": "custom.total", "remote": "t", "transforms": ["money"]},
            ],
        }
    )
    hub = {"first_name": first, "last_name": " ".join(last) or None, "custom.total": None}
    hub["custom.total"] = mapping.to_canonical({"t": str(amount)})["custom.total"]
    assert mapping.to_canonical(mapping.to_remote(hub)) == hub
    assert mapping.normalize("custom.total", hub["custom.total"]) == hub["custom.total"]


# -- loading and checking files ----------------------------------------------------------


def test_good_file_checks_clean(tmp_path: Path) -> None:
    assert check_mapping_file(write(tmp_path, MAILCHIMP)) == []


def test_every_problem_is_listed_with_line_and_key(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        entity = "contact"
        colour = "blue"

        [[field]]
        canonical = "email"
        remote = "email_address"
        transforms = ["trim", "lowr"]

        [[field]]
        canonical = "frist_name"
        remote = "merge_fields..FNAME"
        direction = "sideways"

        [[field]]
        canonical = "email"
        remote = "email_address"
        extra = 1
        transforms = [
          { name = "phone", regon = "GB" },
          { name = "map" },
        ]

        [[field]]
        canonical = ["first_name", "last_name"]
        remote = "name"
        """,
    )
    found = [(p.line, p.key) for p in problems]
    assert found == [
        (2, "colour"),
        (7, "field[1].transforms"),
        (10, "field[2].canonical"),
        (11, "field[2].remote"),
        (12, "field[2].direction"),
        (15, "field[3].canonical"),  # email pulled twice
        (16, "field[3].remote"),  # email_address pushed twice
        (17, "field[3].extra"),
        (18, "field[3].transforms"),
        (18, "field[3].transforms"),
        (24, "field[4].canonical"),
    ]
    text = [p.message for p in problems]
    assert "did you mean 'lower'?" in text[1]
    assert "did you mean 'first_name'?" in text[2]
    assert "already filled by field[1], line 4" in text[5]
    assert "has no argument 'regon' (valid: region, format, keep_invalid)" in text[8]
    assert "needs argument 'values'" in text[9]
    assert all(p.file == str(tmp_path / "mapping.toml") for p in problems)


def test_unknown_transform_lists_the_valid_ones(tmp_path: Path) -> None:
    (problem,) = problems_of(
        tmp_path,
        """
        entity = "contact"
        [[field]]
        canonical = "email"
        remote = "e"
        transforms = ["sparkle"]
        """,
    )
    assert problem.line == 5
    for name in transform_names():
        assert name in problem.message
    assert {"trim", "phone", "money", "split_name", "map"} <= set(transform_names())


def test_unknown_entity_and_keys(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        entity = "person"
        [[field]]
        canonical = "anything"
        remote = "x"
        transforms = "trim"
        """,
    )
    assert [(p.line, p.key) for p in problems] == [(1, "entity")]
    assert "contact, company, activity, ticket, invoice" in problems[0].message
    assert "no [[field]]" in problems_of(tmp_path, 'entity = "contact"\n')[0].message


def test_bad_arguments_are_reported(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        entity = "contact"
        [[field]]
        canonical = "phone"
        remote = "p"
        transforms = [{ name = "phone", region = "XX" }]
        [[field]]
        canonical = "consent_at"
        remote = "t"
        transforms = [{ name = "datetime", timezone = "Mars/Olympus" }]
        [[field]]
        canonical = "custom.amount"
        remote = "a"
        transforms = [{ name = "money", places = -1 }, { name = "date", format = "dd/mm" }]
        [[field]]
        canonical = "tags"
        remote = "tags"
        transforms = [{ name = "split", sep = "" }, { region = "GB" }]
        """,
    )
    messages = [(p.line, p.message) for p in problems]
    assert len(messages) == 6
    assert "'XX' is not a phone region" in messages[0][1]
    assert "'Mars/Olympus' is not a time zone" in messages[1][1]
    assert "argument 'places'" in messages[2][1]
    assert "no %-directive" in messages[3][1]
    assert "sep must not be empty" in messages[4][1]
    assert "is not a transform" in messages[5][1]
    assert [line for line, _ in messages] == [5, 9, 13, 13, 17, 17]


def test_arity_and_shape_mismatches(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        entity = "contact"
        [[field]]
        canonical = "first_name"
        remote = ["a", "b"]
        [[field]]
        canonical = ["city", "country"]
        remote = ["c", "d"]
        transforms = ["join_name"]
        [[field]]
        canonical = "custom.x"
        remote = "x"
        transforms = ["join_name"]
        [[field]]
        remote = 3
        """,
    )
    assert [(p.line, p.key) for p in problems] == [
        (3, "field[1].canonical"),
        (7, "field[2].remote"),
        (12, "field[3].transforms"),
        (13, "field[4].canonical"),  # a missing key points at its table
        (14, "field[4].remote"),
    ]
    assert "turn 2 remote path(s) into 2 value(s)" in problems[0].message
    assert "one side must be a single field" in problems[1].message
    assert "takes 2 values but gets 1" in problems[2].message
    assert "canonical is missing" in problems[3].message


def test_push_overlaps_are_refused_but_pull_may_share(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        entity = "contact"
        [[field]]
        canonical = "city"
        remote = "address"
        [[field]]
        canonical = "street"
        remote = "address.street"
        """,
    )
    assert [(p.line, p.key) for p in problems] == [(7, "field[2].remote")]
    shared = Mapping.from_dict(
        {
            "entity": "contact",
            "field": [
                {"canonical": "city", "remote": "address.city"},
                {"canonical": "custom.city", "remote": "address.city", "direction": "pull"},
                {"canonical": "city", "remote": "town", "direction": "push"},
            ],
        }
    )
    assert shared.to_canonical({"address": {"city": "Rome"}}) == {
        "city": "Rome",
        "custom.city": "Rome",
    }
    assert shared.to_remote({"city": "Oslo"}) == {"address": {"city": "Oslo"}, "town": "Oslo"}


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'entity = "contact"\n[[field]\n')
    (problem,) = check_mapping_file(path)
    assert problem.line == 2
    assert "not valid TOML" in problem.message
    (missing,) = check_mapping_file(tmp_path / "absent.toml")
    assert "file not found" in missing.message


def test_from_dict_reports_without_lines() -> None:
    with pytest.raises(MappingError) as caught:
        Mapping.from_dict({"entity": "company", "field": [{"canonical": "email", "remote": "e"}]})
    (problem,) = caught.value.problems
    assert problem.line is None
    assert problem.key == "field[1].canonical"
    assert problem.file == "<inline>"
    assert "'email' is not a field of company" in str(caught.value)


def test_phone_region_from_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        entity = "contact"
        [[field]]
        canonical = "phone"
        remote = "p"
        transforms = ["phone"]
        """,
    )
    assert load_mapping(path, phone_region="GB").to_canonical({"p": "020 7946 0958"}) == {
        "phone": "+442079460958"
    }


def test_registered_transforms_are_usable_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone after

    @register_transform("test_reverse", NoParams)
    def reverse(params: NoParams, ctx: BuildContext) -> Step:
        """Reverse the text."""
        return Step(pull=lambda v: v[::-1], push=lambda v: v[::-1])

    assert pull(["test_reverse"], "abc") == "cba"
    assert push(["test_reverse"], "cba") == "abc"
    with pytest.raises(ValueError, match="already registered"):
        register_transform("test_reverse")(reverse)


def test_readme_documents_every_built_in_transform() -> None:
    readme = (Path(__file__).parents[2] / "mappings" / "README.md").read_text(encoding="utf-8")
    missing = [name for name in transform_names() if f"| `{name}` |" not in readme]
    assert missing == []
