"""The server side of each paginator kind, for generated sandboxes.

``serve(paginator, request, items)`` picks the page the request asks for and says what the
answer must carry for the client's paginator to find the next one: body fields (by JSON
path) and headers.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from hub.rest.jsonpath import JsonPath
from hub.rest.paginators import (
    CursorPaginator,
    HeaderCursorPaginator,
    LinkPaginator,
    NextUrlPaginator,
    NoPaginator,
    OffsetPaginator,
    PageNumberPaginator,
)

__all__ = ["Served", "serve"]

MAX_PAGE = 1000
"""Largest page a sandbox serves, whatever is asked (servers cap sizes)."""
DEFAULT_PAGE = 100
TOKEN = "page_token"
"""The sandbox's own query parameter in next links (``link`` and ``next_url`` kinds)."""


@dataclass
class Served:
    items: list[Any]
    fields: dict[str, Any] = field(default_factory=dict)
    """JSON path -> value, written into the answer's body."""
    headers: dict[str, str] = field(default_factory=dict)


def _int(value: Any, default: int, low: int = 0) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(low, number)


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def _offset(token: Any) -> int:
    if not isinstance(token, str) or not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return 0
    return _int(text[1:], 0) if text.startswith("o") else 0


def _flags(paginator: Any, out: Served, more: bool, total: int) -> None:
    if paginator.has_more is not None:
        out.fields[paginator.has_more] = more
    if getattr(paginator, "end", None) is not None:
        out.fields[paginator.end] = not more
    if getattr(paginator, "total", None) is not None:
        out.fields[paginator.total] = total


def serve(paginator: Any, request: Request, body: Any, items: list[Any]) -> Served:
    """The page of ``items`` that ``request`` asks for under ``paginator``."""
    params = request.query_params
    if isinstance(paginator, NoPaginator):
        out = Served(items)
        _flags(paginator, out, False, len(items))
        return out
    if isinstance(paginator, OffsetPaginator):
        offset = _int(params.get(paginator.offset_param), paginator.start_at) - paginator.start_at
        size = min(_int(params.get(paginator.limit_param), paginator.limit, 1), MAX_PAGE)
        return _slice(paginator, items, offset, size)
    if isinstance(paginator, PageNumberPaginator):
        size = paginator.size or DEFAULT_PAGE
        if paginator.size_param is not None:
            size = _int(params.get(paginator.size_param), size, 1)
        size = min(size, MAX_PAGE)
        page = _int(params.get(paginator.page_param), paginator.start_at) - paginator.start_at
        out = _slice(paginator, items, page * size, size)
        if paginator.total_pages is not None:
            out.fields[paginator.total_pages] = math.ceil(len(items) / size)
        return out
    if isinstance(paginator, CursorPaginator | HeaderCursorPaginator):
        if paginator.send == "body":
            given = JsonPath(paginator.param).first(body or {})
            size_given = (
                JsonPath(paginator.size_param).first(body or {}) if paginator.size_param else None
            )
        else:
            given = params.get(paginator.param)
            size_given = params.get(paginator.size_param) if paginator.size_param else None
        size = min(_int(size_given, paginator.size or DEFAULT_PAGE, 1), MAX_PAGE)
        offset = _offset(given)
        out = _slice(paginator, items, offset, size)
        more = offset + size < len(items)
        token = _token(offset + size) if more else None
        if isinstance(paginator, CursorPaginator):
            out.fields[paginator.cursor] = token
        elif token is not None:
            out.headers[paginator.header] = token
        return out
    if isinstance(paginator, LinkPaginator | NextUrlPaginator):
        offset = _offset(params.get(TOKEN))
        size = min(_int(params.get("limit"), DEFAULT_PAGE, 1), MAX_PAGE)
        out = _slice(paginator, items, offset, size)
        following = None
        if offset + size < len(items):
            following = str(request.url.include_query_params(**{TOKEN: _token(offset + size)}))
        if isinstance(paginator, LinkPaginator):
            if following is not None:
                out.headers["Link"] = f'<{following}>; rel="{paginator.rel}"'
        else:
            out.fields[paginator.next] = following
        return out
    serve_hook = getattr(paginator, "serve", None)
    if serve_hook is None:
        raise TypeError(f"{type(paginator).__name__} has no serve() for the sandbox")
    page, fields, headers = serve_hook(dict(params), body, items)
    return Served(list(page), dict(fields), dict(headers))


def feed_token(position: int) -> str:
    return _token(position)


def feed_position(token: Any) -> int | None:
    return _offset(token) if isinstance(token, str) and token else None


def _slice(paginator: Any, items: list[Any], offset: int, size: int) -> Served:
    out = Served(items[offset : offset + size])
    _flags(paginator, out, offset + size < len(items), len(items))
    return out
