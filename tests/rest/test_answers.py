"""Answers a declared pull cannot read are said, never taken for an empty listing: a body
that is not JSON or has no records where the declaration says fails the pull (its cursor
stays), a record that is not an object or has no id is skipped and named in the page's
``problems``. A record a transform hook drops is no problem."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from hub.connector import ConnectorContext, Page
from hub.errors import TransientError
from hub.rest.sandbox import sandbox_settings
from hub.testing.credentials import StaticCredentials
from tests.rest.kit import connector_class, declaration, pull

BASE = "https://people.example/api"
GOOD = {"id": 1, "email": "a@x.com", "updated_at": "2024-05-01T12:00:00Z", "version": "1"}


async def pulled(answer: httpx.Response, stream: dict[str, Any] | None = None) -> list[Page]:
    cls = connector_class(declaration(stream))
    values = {**sandbox_settings(cls.declaration), "base_url": BASE}
    connector = cls(
        cls.Settings.model_validate(values),
        ConnectorContext("people", credentials=StaticCredentials(api_key="key")),
    )
    try:
        with respx.mock() as mock:
            mock.get(url__startswith=f"{BASE}/contacts").mock(return_value=answer)
            return await pull(connector)
    finally:
        await connector.aclose()


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (httpx.Response(200, text="<html>Sign in</html>"), "answer is not JSON"),
        (httpx.Response(200, json={"items": [GOOD]}), "no records at $.data (it has: items)"),
        (httpx.Response(200, json=[GOOD]), "no records at $.data (it is a list)"),
        (httpx.Response(200, json={"data": "none"}), "$.data is a string"),
    ],
)
async def test_an_answer_without_its_records_fails_the_pull(
    answer: httpx.Response, words: str
) -> None:
    with pytest.raises(TransientError) as caught:
        await pulled(answer)
    assert words in str(caught.value) and "GET /api/contacts" in str(caught.value)


async def test_an_empty_listing_may_say_null() -> None:
    pages = await pulled(httpx.Response(200, json={"data": None}))
    assert [(p.records, p.problems) for p in pages] == [([], [])]


@pytest.mark.parametrize("incremental", [True, False])
async def test_records_without_an_id_are_skipped_and_named(incremental: bool) -> None:
    answer = {"data": [GOOD, {"email": "b@x.com"}, "c@x.com", {**GOOD, "id": ""}]}
    stream = None if incremental else {"incremental": None}
    [page] = await pulled(httpx.Response(200, json=answer), stream)
    assert [r.id for r in page.records] == ["1"]
    assert page.problems == [
        "GET /api/contacts?page=1&per_page=5: record 2 has no id at $.id",
        "GET /api/contacts?page=1&per_page=5: record 3 is not an object but a string",
        "GET /api/contacts?page=1&per_page=5: record 4 has no id at $.id",
    ]


async def test_records_a_transform_drops_are_no_problem() -> None:
    answer = {"data": [GOOD, {**GOOD, "id": 2, "email": None}]}
    stream = {"transform": "tests.rest.hooks:only_with_email"}
    [page] = await pulled(httpx.Response(200, json=answer), stream)
    assert [r.id for r in page.records] == ["1"] and page.problems == []
