"""``paginator``: how a listing goes from one page to the next, by ``kind``.

Every paginator turns the stream's first request into the first page's (``start``) and,
given an answer, names the next request or ``None`` to stop (``advance``). Stop conditions
shared by all: an empty page ends the listing (``stop_on_empty``), and so does a false
``has_more`` or a true ``end`` (JSON paths to booleans in the body).

Change feeds (Zendesk's incremental exports) hand out a position with their last page too:
``follow`` names the request that continues from an answer whatever the stop conditions
say, so a pull can keep it and the next pull starts there (``incremental.resume``).

A ``custom`` paginator is a class named by ``hook`` (``package.module:Class``), made with
``options`` as keyword arguments, with the same two methods (see :class:`Paginator`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import httpx
from pydantic import Field

from hub.rest.base import KindSpec
from hub.rest.jsonpath import JsonPath

__all__ = [
    "PAGINATOR_KINDS",
    "CursorPaginator",
    "CustomPaginator",
    "HeaderCursorPaginator",
    "LinkPaginator",
    "NextUrlPaginator",
    "NoPaginator",
    "OffsetPaginator",
    "PageAnswer",
    "PageNumberPaginator",
    "PageRequest",
    "Paginator",
    "PaginatorSpec",
]


@dataclass
class PageRequest:
    """One listing request: ``url`` is relative to the base URL, or absolute (next links)."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def with_params(self, **params: Any) -> PageRequest:
        return replace(self, params={**self.params, **params})

    def to_json(self) -> dict[str, Any]:
        """The request as a cursor can keep it (to resume an interrupted pull)."""
        out: dict[str, Any] = {"method": self.method, "url": self.url, "params": self.params}
        if self.json is not None:
            out["json"] = self.json
        if self.headers:
            out["headers"] = self.headers
        return out

    @classmethod
    def from_json(cls, value: Any) -> PageRequest | None:
        """The request a cursor kept, or ``None`` when it does not read as one."""
        if not isinstance(value, dict):
            return None
        method, url, params = value.get("method"), value.get("url"), value.get("params")
        headers = value.get("headers") or {}
        if not (isinstance(method, str) and isinstance(url, str) and isinstance(params, dict)):
            return None
        if not isinstance(headers, dict):
            return None
        return cls(method, url, dict(params), value.get("json"), dict(headers))


@dataclass
class PageAnswer:
    """What a paginator may look at: the response, its parsed body, how many records."""

    response: httpx.Response
    body: Any
    count: int


@runtime_checkable
class Paginator(Protocol):
    """The two methods of every paginator (and of a ``custom`` hook class)."""

    def start(self, request: PageRequest) -> PageRequest: ...

    def advance(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None: ...


class _Base(KindSpec):
    has_more: str | None = None
    """JSON path to a boolean in the body; ``false`` ends the listing."""
    end: str | None = None
    """JSON path to a boolean in the body; ``true`` ends the listing (``$.end_of_stream``)."""
    stop_on_empty: bool = True
    """An answer with no records ends the listing."""

    def _ends(self, answer: PageAnswer) -> bool:
        if self.stop_on_empty and answer.count == 0:
            return True
        if self.end is not None and JsonPath(self.end).first(answer.body) is True:
            return True
        return self.has_more is not None and not JsonPath(self.has_more).first(answer.body)

    def follow(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        """The request continuing after ``answer`` regardless of stop conditions (``None``:
        the answer names none)."""
        return None

    def start(self, request: PageRequest) -> PageRequest:
        return request


class NoPaginator(_Base):
    """One request answers everything."""

    kind: Literal["none"] = "none"

    def advance(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        return None


class _Sized(_Base):
    total: str | None = None
    """JSON path to the number of records in the whole listing."""
    stop_on_short: bool = True
    """A page with fewer records than asked for is the last (unless ``total`` or
    ``has_more`` is declared: then they decide, for servers that cap the size)."""

    def _short(self, answer: PageAnswer, size: int | None) -> bool:
        decided = self.total is not None or self.has_more is not None
        return self.stop_on_short and not decided and size is not None and answer.count < size

    def _past_total(self, answer: PageAnswer, seen: int) -> bool:
        if self.total is None:
            return False
        total = JsonPath(self.total).first(answer.body)
        return isinstance(total, int) and seen >= total


class OffsetPaginator(_Sized):
    """``?offset=0&limit=100``, then ``offset=100``..."""

    kind: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(100, ge=1)
    start_at: int = Field(0, ge=0)

    def start(self, request: PageRequest) -> PageRequest:
        return request.with_params(
            **{self.offset_param: self.start_at, self.limit_param: self.limit}
        )

    def advance(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        offset = int(request.params.get(self.offset_param, self.start_at)) + answer.count
        if self._ends(answer) or self._short(answer, self.limit):
            return None
        if self._past_total(answer, offset - self.start_at):
            return None
        return request.with_params(**{self.offset_param: offset})


class PageNumberPaginator(_Sized):
    """``?page=1&per_page=100``, then ``page=2``..."""

    kind: Literal["page_number"]
    page_param: str = "page"
    size_param: str | None = "per_page"
    """``None``: the server's own page size (then set ``size`` to it, or a stop condition)."""
    size: int | None = Field(100, ge=1)
    start_at: int = Field(1, ge=0)
    total_pages: str | None = None
    """JSON path to the number of pages."""

    def start(self, request: PageRequest) -> PageRequest:
        params: dict[str, Any] = {self.page_param: self.start_at}
        if self.size_param is not None and self.size is not None:
            params[self.size_param] = self.size
        return request.with_params(**params)

    def advance(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        page = int(request.params.get(self.page_param, self.start_at))
        if self._ends(answer) or self._short(answer, self.size):
            return None
        if self.total_pages is not None:
            pages = JsonPath(self.total_pages).first(answer.body)
            if isinstance(pages, int) and page - self.start_at + 1 >= pages:
                return None
        if self.size is not None and self._past_total(
            answer, (page - self.start_at) * self.size + answer.count
        ):
            return None
        return request.with_params(**{self.page_param: page + 1})


class _Cursor(_Base):
    param: str = "cursor"
    """Query parameter (or body key, with ``send = "body"``) the next cursor goes in."""
    send: Literal["query", "body"] = "query"
    size_param: str | None = None
    size: int | None = Field(None, ge=1)

    def start(self, request: PageRequest) -> PageRequest:
        if self.size_param is not None and self.size is not None:
            return self._put(request, self.size_param, self.size)
        return request

    def _put(self, request: PageRequest, key: str, value: Any) -> PageRequest:
        if self.send == "body":
            body = dict(request.json or {})
            JsonPath(key).set(body, value)
            return replace(request, json=body)
        return request.with_params(**{key: value})

    def _next(self, request: PageRequest, answer: PageAnswer, token: Any) -> PageRequest | None:
        if self._ends(answer):
            return None
        return self._following(request, token)

    def _following(self, request: PageRequest, token: Any) -> PageRequest | None:
        if token in (None, ""):
            return None
        previous = (
            JsonPath(self.param).first(request.json or {})
            if self.send == "body"
            else request.params.get(self.param)
        )
        if previous == token:  # a server that repeats its cursor would loop forever
            return None
        return self._put(request, self.param, token)


class CursorPaginator(_Cursor):
    """The next cursor is in the body (``cursor = "$.meta.next_cursor"``)."""

    kind: Literal["cursor"]
    cursor: str
    """JSON path to the next cursor; missing, null or empty ends the listing."""

    def advance(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        return self._next(request, answer, JsonPath(self.cursor).first(answer.body))

    def follow(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        token = JsonPath(self.cursor).first(answer.body)
        return self._put(request, self.param, token) if token not in (None, "") else None


class HeaderCursorPaginator(_Cursor):
    """The next cursor is in a response header (``header = "X-Next-Cursor"``)."""

    kind: Literal["header_cursor"]
    header: str

    def advance(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        return self._next(request, answer, answer.response.headers.get(self.header))


class LinkPaginator(_Base):
    """RFC 8288 ``Link: <https://...?page=2>; rel="next"``."""

    kind: Literal["link"]
    rel: str = "next"

    def advance(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        link = answer.response.links.get(self.rel, {}).get("url")
        if not link or self._ends(answer):
            return None
        return replace(request, url=str(answer.response.request.url.join(link)), params={})


class NextUrlPaginator(_Base):
    """The next page's URL is in the body (``next = "$.links.next"``)."""

    kind: Literal["next_url"]
    next: str

    def advance(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        return None if self._ends(answer) else self.follow(request, answer)

    def follow(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        link = JsonPath(self.next).first(answer.body)
        if not isinstance(link, str) or not link:
            return None
        return replace(request, url=str(answer.response.request.url.join(link)), params={})


class CustomPaginator(KindSpec):
    """A paginator class of your own: ``hook = "package.module:Class"``."""

    kind: Literal["custom"]
    hook: str
    options: dict[str, Any] = {}


BuiltinPaginatorSpec = Annotated[
    NoPaginator
    | OffsetPaginator
    | PageNumberPaginator
    | CursorPaginator
    | HeaderCursorPaginator
    | LinkPaginator
    | NextUrlPaginator,
    Field(discriminator="kind"),
]
PaginatorSpec = Annotated[
    NoPaginator
    | OffsetPaginator
    | PageNumberPaginator
    | CursorPaginator
    | HeaderCursorPaginator
    | LinkPaginator
    | NextUrlPaginator
    | CustomPaginator,
    Field(discriminator="kind"),
]
PAGINATOR_KINDS = (
    "none",
    "offset",
    "page_number",
    "cursor",
    "header_cursor",
    "link",
    "next_url",
    "custom",
)
