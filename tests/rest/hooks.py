"""Hooks named by test declarations (``tests.rest.hooks:...``)."""

from __future__ import annotations

from typing import Any

from hub.rest import PageAnswer, PageRequest


class PageLetters:
    """A made-up scheme: pages named a, b, c... in ``?sheet=``, ``size`` records each."""

    def __init__(self, size: int = 4) -> None:
        self.size = size

    def start(self, request: PageRequest) -> PageRequest:
        return request.with_params(sheet="a", rows=self.size)

    def advance(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        if answer.count < self.size:
            return None
        return request.with_params(sheet=chr(ord(request.params["sheet"]) + 1))

    def serve(
        self, params: dict[str, str], body: Any, items: list[Any]
    ) -> tuple[list[Any], dict[str, Any], dict[str, str]]:
        start = (ord(params.get("sheet", "a")) - ord("a")) * self.size
        return items[start : start + self.size], {}, {}


def only_with_email(record: dict[str, Any]) -> dict[str, Any] | None:
    """Drops records without an email; upper-cases last names."""
    if not record.get("email"):
        return None
    return {**record, "last_name": str(record.get("last_name", "")).upper()}
