"""Holding a sandbox to the provider's published API description (OpenAPI 3, ``openapi-core``).

A connector's sandbox names its provider's description once::

    MAILCHIMP_API = ApiDescription(
        Path(__file__).with_name("spec") / "marketing_subset.json",
        defects=(Defect("response", "*", r"'' is not a 'date-time'", why="..."),),
        refuse=mailchimp_refusal,
    )
    SandboxApp(app, ..., spec=MAILCHIMP_API)

and :class:`~hub.sandbox.app.SandboxApp` then checks every request it receives and every
answer it gives against it. A request the description does not allow is refused (``refuse``
builds the provider's own error answer, so the connector surfaces it) and, like an answer
that breaks the description, recorded as a :class:`Violation`; tests fail on any violation
(``hub.testing.sandboxes``). What a description gets wrong about its own API is listed as a
:class:`Defect`, each with the reason, in the one place the sandbox defines its description.

Paths outside the description's base path (the sandbox's test controls, an OAuth server)
are not the provider's API and are not checked.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from starlette.responses import JSONResponse, Response

__all__ = ["ApiDescription", "Defect", "Violation", "ViolationLog", "default_refusal"]

Direction = Literal["description", "request", "response", "webhook"]
MAX_ERRORS = 8
"""Most distinct errors kept per violation (a listing can break the same rule 1,000 times)."""


@dataclass(frozen=True)
class Defect:
    """A known error of the description: violations it matches are not the sandbox's fault.

    ``operation`` is ``"METHOD /path/template"`` as the description writes it, or ``"*"``;
    ``match`` is a regular expression searched in each error's text.
    """

    direction: Direction
    operation: str
    match: str
    why: str

    def excuses(self, direction: str, operation: str, error: str) -> bool:
        return (
            self.direction == direction
            and self.operation in ("*", operation)
            and re.search(self.match, error) is not None
        )


@dataclass(frozen=True)
class Violation:
    """A request, answer or webhook that the provider's description does not allow."""

    direction: Direction
    method: str
    path: str
    operation: str
    status: int | None
    errors: tuple[str, ...]

    def __str__(self) -> str:
        head = f"{self.direction} {self.method} {self.path}"
        if self.status is not None:
            head += f" -> {self.status}"
        return f"{head} ({self.operation}): " + "; ".join(self.errors)


class ViolationLog:
    """The violations one sandbox recorded, in order; safe across threads. ``recorded``
    counts every violation ever added (``take`` does not lower it)."""

    def __init__(self) -> None:
        self._items: list[tuple[int, Violation]] = []
        self.recorded = 0
        self._lock = threading.Lock()

    def add(self, violation: Violation) -> None:
        with self._lock:
            self._items.append((self.recorded, violation))
            self.recorded += 1

    def items(self, since: int = 0) -> list[Violation]:
        """The violations kept, from the ``since``-th ever recorded on."""
        with self._lock:
            return [v for n, v in self._items if n >= since]

    def take(self) -> list[Violation]:
        """The violations so far, forgotten: for a test that sends invalid requests on purpose."""
        with self._lock:
            taken, self._items = self._items, []
            return [v for _, v in taken]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def default_refusal(violation: Violation) -> Response:
    return JSONResponse(
        {"error": "request does not follow the API description", "errors": violation.errors},
        status_code=400,
    )


@dataclass(frozen=True)
class _Request:
    """What ``openapi-core`` reads of a request (its ``Request`` protocol)."""

    host_url: str
    path: str
    method: str
    parameters: Any
    content_type: str
    body: bytes


@dataclass(frozen=True)
class _Response:
    """What ``openapi-core`` reads of a response (its ``Response`` protocol)."""

    data: bytes
    status_code: int
    headers: Any
    content_type: str


@dataclass(eq=False)
class ApiDescription:
    """A provider's OpenAPI description, its known defects and its refusal answer.

    Loaded on first use and shared by every sandbox of the process. ``webhooks`` checks a
    webhook payload the sandbox sends (the provider's documented format) and returns what is
    wrong with it; descriptions rarely cover webhooks.
    """

    source: Path
    defects: tuple[Defect, ...] = ()
    refuse: Callable[[Violation], Response] = default_refusal
    webhooks: Callable[[bytes, Mapping[str, str]], list[str]] | None = None
    outside: tuple[str, ...] = ()
    """Paths under the base path that are the protocol's, not operations the description
    could name (Graph's ``/v1.0/$batch``); the sandbox checks the requests they carry."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def document(self) -> dict[str, Any]:
        data = json.loads(self.source.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not str(data.get("openapi", "")).startswith("3."):
            raise ValueError(f"{self.source}: not an OpenAPI 3 description")
        return data

    @cached_property
    def api(self) -> Any:
        from openapi_core import Config, OpenAPI
        from openapi_core.deserializing.media_types.util import json_loads

        # The description itself is checked by a test (``spec_errors``), not at every start;
        # RFC 7807 problem answers are JSON, which openapi-core does not know by itself.
        config = Config(
            spec_validator_cls=None,
            extra_media_type_deserializers={"application/problem+json": json_loads},
        )
        return OpenAPI.from_dict(self.document, config=config)

    @cached_property
    def _server(self) -> tuple[str, str]:
        """(origin, base path) of the description's first server."""
        server = (self.document.get("servers") or [{"url": "/"}])[0]
        url = str(server.get("url", "/"))
        for name, variable in (server.get("variables") or {}).items():
            url = url.replace("{" + name + "}", str(variable.get("default", "")))
        parts = urlsplit(url)
        origin = f"{parts.scheme or 'http'}://{parts.netloc or 'localhost'}"
        return origin, parts.path.rstrip("/")

    @property
    def base_path(self) -> str:
        return self._server[1]

    def covers(self, path: str) -> bool:
        """Whether ``path`` is under the description's base path (the provider's API)."""
        if path in self.outside:
            return False
        base = self.base_path
        return not base or path == base or path.startswith(base + "/")

    def operation(self, method: str, path: str) -> str:
        """``"METHOD /template"`` of the operation ``path`` matches, or ``"METHOD ?"``."""
        relative = path[len(self.base_path) :] or "/"
        for template in self.document.get("paths", {}):
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, relative):
                return f"{method.upper()} {template}"
        return f"{method.upper()} ?"

    # -- checking ------------------------------------------------------------------------

    def check_request(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Violation | None:
        request = self._request(method, path, query, headers, body)
        with self._lock:
            found = list(self.api.iter_request_errors(request))
        scheme = headers.get("authorization", "").partition(" ")[0] or "none"
        return self._violation("request", method, path, None, found, scheme)

    def check_response(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        status: int,
        response_headers: Mapping[str, str],
        response_body: bytes,
    ) -> Violation | None:
        from werkzeug.datastructures import Headers

        request = self._request(method, path, query, headers, body)
        kind = response_headers.get("content-type", "").split(";")[0].strip()
        response = _Response(response_body, status, Headers(dict(response_headers)), kind)
        with self._lock:
            found = list(self.api.iter_response_errors(request, response))
        return self._violation("response", method, path, status, found)

    def check_webhook(self, url: str, body: bytes, headers: Mapping[str, str]) -> Violation | None:
        if self.webhooks is None:
            return None
        errors = self._excused("webhook", "webhook", self.webhooks(body, headers))
        if not errors:
            return None
        return Violation("webhook", "POST", urlsplit(url).path, "webhook", None, errors)

    def spec_errors(self) -> list[str]:
        """What ``openapi-spec-validator`` finds wrong with the description itself, less the
        ``Defect("description", ...)`` entries listed for it."""
        from openapi_spec_validator import OpenAPIV30SpecValidator

        found = [
            f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"
            for e in OpenAPIV30SpecValidator(self.document).iter_errors()
        ]
        return [e for e in found if not any(d.excuses("description", "*", e) for d in self.defects)]

    # -- helpers -------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> _Request:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(query, keep_blank_values=True)),
            header=Headers(dict(headers)),
        )
        kind = headers.get("content-type", "").split(";")[0].strip()
        return _Request(self._server[0], path, method.lower(), parameters, kind, body)

    def _violation(
        self,
        direction: Direction,
        method: str,
        path: str,
        status: int | None,
        found: list[Any],
        scheme: str = "",
    ) -> Violation | None:
        if not found:
            return None
        operation = self.operation(method, path)
        # a security error names the scheme sent, so a defect can excuse one scheme only
        texts = (
            f"{e} (Authorization: {scheme})" if e.startswith("SecurityValidationError") else e
            for e in _flatten(found)
        )
        errors = self._excused(direction, operation, texts)
        if not errors:
            return None
        return Violation(direction, method.upper(), path, operation, status, errors)

    def _excused(self, direction: str, operation: str, errors: Iterable[str]) -> tuple[str, ...]:
        kept: list[str] = []
        for error in errors:
            if any(d.excuses(direction, operation, error) for d in self.defects):
                continue
            if error not in kept:
                kept.append(error)
        if len(kept) > MAX_ERRORS:
            kept = [*kept[:MAX_ERRORS], f"... and {len(kept) - MAX_ERRORS} more"]
        return tuple(kept)


_INDEX = re.compile(r"/\d+(?=/|$)")


def _flatten(errors: Iterable[BaseException]) -> Iterator[str]:
    """One short line per problem: the error's kind (and parameter), then each JSON-schema
    error under it with its location (list indices folded to ``*``, so a rule broken by
    every item of a listing reads once). Values are cut short: they may be personal data."""
    for error in errors:
        label = type(error).__name__
        name = getattr(error, "name", None)
        if name:
            label += f" {name!r}"
        cause: BaseException | None = error
        detail = str(error)
        while cause is not None:
            schema_errors = getattr(cause, "schema_errors", None)
            if schema_errors:
                for schema_error in schema_errors:
                    where = _INDEX.sub("/*", "/" + "/".join(map(str, schema_error.absolute_path)))
                    yield _short(f"{label}: {where[1:] or '.'}: {schema_error.message}")
                break
            if cause is not error:
                detail = f"{detail}: {type(cause).__name__}: {cause}"
            cause = cause.__cause__
        else:
            yield _short(f"{label}: {detail}")


def _short(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
