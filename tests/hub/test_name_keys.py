"""A contact's name key: "first last", case-, accent- and whitespace-insensitive."""

from __future__ import annotations

import pytest

from hub.connector import Stream
from hub.engine.identity import identity_key
from hub.records import FULL_NAME, KEY_FIELDS, match_keys, normalize_full_name


@pytest.mark.parametrize(
    ("first", "last", "key"),
    [
        ("Ann", "Lee", "ann lee"),
        ("  ANN ", "lee  ", "ann lee"),
        ("José", "Núñez", "jose nunez"),
        ("JOSÉ", "NU\u0303N\u0303EZ", "jose nunez"),  # combining tildes, upper case
        ("Mary\tAnn", "de  la Cruz", "mary ann de la cruz"),
        ("Straße", None, "strasse"),
        (None, "Lee", "lee"),
        ("\uff2a\uff4f", "\uff2c\uff45\uff45", "jo lee"),  # full-width letters
    ],
)
def test_the_key_ignores_case_accents_and_spacing(
    first: str | None, last: str | None, key: str
) -> None:
    assert normalize_full_name(first, last) == key


@pytest.mark.parametrize(("first", "last"), [(None, None), ("", " "), ("x" * 200, "y" * 200)])
def test_no_key_for_a_blank_or_overlong_name(first: str | None, last: str | None) -> None:
    assert normalize_full_name(first, last) is None


def test_every_contact_has_its_name_key_last() -> None:
    fields = {"email": "A@B.com", "phone": "+14155550100", "first_name": "Ann", "last_name": "Lee"}
    assert match_keys("contact", fields) == [
        ("email", "a@b.com"),
        ("phone", "+14155550100"),
        (FULL_NAME, "ann lee"),
    ]
    assert match_keys("contact", {"first_name": "Ann"}) == [(FULL_NAME, "ann")]
    assert match_keys("company", {"name": "Ann Lee"}) == [("name", "ann lee")]
    assert {"first_name", "last_name"} <= KEY_FIELDS  # a renamed contact is keyed again


def test_a_name_identifies_only_for_a_stream_that_opts_in() -> None:
    plain = Stream("rows", "contact")
    by_name = Stream("users", "contact", match_by_name=True)
    name_only = match_keys("contact", {"first_name": "Ann", "last_name": "Lee"})
    with_email = match_keys("contact", {"email": "a@b.com", "first_name": "Ann"})
    assert identity_key(name_only, plain) is None
    assert identity_key(name_only, by_name) == (FULL_NAME, "ann lee")
    assert identity_key(with_email, by_name) == ("email", "a@b.com")  # the stronger key
    assert identity_key([], by_name) is None
