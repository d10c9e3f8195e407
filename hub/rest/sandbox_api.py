"""The API a generated sandbox serves: listings, fetches, writes and batches as declared.

Every answer is the one the declaration expects: records where ``records`` points, paging
fields and headers of the declared paginator, versions in the declared field or ``ETag``,
refusals with the status (and body) that the declared error rules read as stale, not found
or already deleted.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from hub.rest.errors import ErrorRule
from hub.rest.jsonpath import JsonPath
from hub.rest.model import Declaration, EndpointDeletes, FakeSpec, StreamSpec
from hub.rest.paginators import CursorPaginator, CustomPaginator, NextUrlPaginator
from hub.rest.sandbox_paging import DEFAULT_PAGE, MAX_PAGE, feed_position, feed_token, serve
from hub.rest.sandbox_state import Answer, Table
from hub.rest.times import formatter, parser
from hub.rest.writes import WriteSpec

__all__ = ["Refused", "StreamApi", "json_answer", "read_json", "refusal"]

DEFAULT_STATUS = {
    "stale": 412,
    "not_found": 404,
    "already_deleted": 404,
    "permanent": 422,
    "throttled": 429,
    "needs_reauth": 401,
}


class Refused(Exception):
    """A refusal the handler turns into the declared answer for ``outcome``."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


def json_answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def refusal(rules: list[ErrorRule], outcome: str, op: str, message: str) -> tuple[int, Any]:
    """The status and body the declared rules read as ``outcome`` for ``op``."""
    for rule in rules:
        if rule.kind != outcome or (rule.ops is not None and op not in rule.ops):
            continue
        status = rule.status[0] if isinstance(rule.status, list) else rule.status
        if not isinstance(status, int):
            continue
        if rule.body is None:
            return status, {"error": message}
        text = re.sub(r"\\(.)", r"\1", rule.body)
        if re.search(rule.body, text):
            return status, {"error": f"{text}: {message}"}
    return DEFAULT_STATUS.get(outcome, 422), {"error": message}


def _bare(version: str | None) -> str | None:
    if version is None:
        return None
    return version.removeprefix("W/").strip().strip('"')


class StreamApi:
    """The handlers of one stream."""

    def __init__(self, decl: Declaration, name: str, table: Table, hooks: dict[str, Any]) -> None:
        self.decl = decl
        self.name = name
        self.spec: StreamSpec = decl.streams[name]
        self.table = table
        self.rules = [*self.spec.errors, *decl.errors]
        self.paginator: Any = self.spec.paginator
        if isinstance(self.paginator, CustomPaginator):
            self.paginator = hooks[self.paginator.hook](**self.paginator.options)
        inc = self.spec.incremental
        base = self.spec.modified_at
        self.read_since = parser(
            (inc.format if inc and inc.format else None) or (base.format if base else "iso"),
            base.timezone if base else "UTC",
        )

    # -- answers -------------------------------------------------------------------------

    def refused(self, exc: Refused, op: str) -> Response:
        status, body = refusal(self.rules, exc.outcome, op, exc.message)
        return json_answer(body, status)

    def record_answer(self, record: dict[str, Any], path: str | None, status: int) -> Response:
        headers = {}
        if self.spec.version and self.spec.version.header:
            version = self.table.current_version(str(self.table.key.first(record)))
            headers[self.spec.version.header] = f'"{version}"'
        if not path:
            return Response(status_code=204 if status == 200 else status, headers=headers)
        root = JsonPath(path)
        body = record if root.is_root else root.set({}, record)
        return json_answer(body, status, headers)

    # -- reads ---------------------------------------------------------------------------

    def _since(self, request: Request, body: Any) -> datetime | None:
        inc = self.spec.incremental
        if inc is None:
            return None
        if inc.send == "if_modified_since":
            value = request.headers.get("if-modified-since")
            try:
                return parsedate_to_datetime(value) if value else None
            except (TypeError, ValueError):
                raise Refused("permanent", f"bad If-Modified-Since {value!r}") from None
        assert inc.param is not None
        given = (
            request.query_params.get(inc.param)
            if inc.send == "query"
            else JsonPath(inc.param).first(body or {})
        )
        if given in (None, ""):
            return None
        since = self.read_since(given)
        if since is None:
            raise Refused("permanent", f"{inc.param}={given!r} is not a time")
        return since

    async def listing(self, request: Request) -> Response:
        body = await read_json(request) if self.spec.method == "POST" else None
        inc = self.spec.incremental
        if inc is not None and inc.resume == "next_page":
            fake = self.decl.sandbox.streams.get(self.name, FakeSpec())
            param = self.paginator.param if isinstance(self.paginator, CursorPaginator) else None
            position = feed_position(request.query_params.get(param or fake.cursor_param))
            since = self._since(request, body) if position is None else None
            return self._feed(request, fake, position, since)
        # Any other listing filters every page by the time it is given: its next pages'
        # tokens (cursors, `page_token` in next links) are offsets, not feed positions.
        since = self._since(request, body)
        if since is not None and inc and inc.send == "if_modified_since":
            # HTTP dates have whole seconds: changed in a later second than the one given
            ids = self.table.listing(since.replace(microsecond=0) + timedelta(seconds=1))
            if not ids:
                return Response(status_code=304)
        else:
            ids = self.table.listing(since)
        served = serve(self.paginator, request, body, ids)
        return self._page(self.table.copies(served.items), served.fields, served.headers)

    def _feed(
        self, request: Request, fake: FakeSpec, position: int | None, since: datetime | None
    ) -> Response:
        """A change feed's page: what changed after the position (or since the time) in
        the order of change, with where to go on, also on the last page."""
        ids, upto = self.table.feed(position, since)
        size_param = fake.size_param or getattr(self.paginator, "size_param", None)
        asked = request.query_params.get(size_param) if size_param else None
        size = min(int(asked) if asked and asked.isdigit() else DEFAULT_PAGE, MAX_PAGE)
        page, end = ids[:size], len(ids) <= max(size, 1)
        token = feed_token(upto if end else self.table.seqs[page[-1]])
        fields: dict[str, Any] = {}
        pager = self.paginator
        if getattr(pager, "end", None) is not None:
            fields[pager.end] = end
        if getattr(pager, "has_more", None) is not None:
            fields[pager.has_more] = not end
        if isinstance(pager, NextUrlPaginator):
            params = {fake.cursor_param: token}
            if asked and size_param:
                params[size_param] = str(size)
            fields[pager.next] = str(request.url.replace_query_params(**params))
        elif isinstance(pager, CursorPaginator):
            fields[pager.cursor] = token
        return self._page(self.table.copies(page), fields, {})

    def _page(self, items: list[Any], fields: dict[str, Any], headers: dict[str, str]) -> Response:
        root = JsonPath(self.spec.records)
        if root.is_root:
            if fields:
                raise Refused("permanent", "records at '$' leave no room for paging fields")
            return json_answer(items, 200, headers)
        out = root.set({}, items)
        for path, value in fields.items():
            JsonPath(path).set(out, value)
        return json_answer(out, 200, headers)

    async def deleted(self, request: Request) -> Response:
        deletes = self.spec.deletes
        assert isinstance(deletes, EndpointDeletes)
        inc = self.spec.incremental
        param = deletes.param or (inc.param if inc else None)
        given = request.query_params.get(param) if param else None
        since = self.read_since(given) if given else None
        write_time = formatter(deletes.format)
        entries: list[Any] = []
        for record_id, when in self.table.deleted_since(since):
            if JsonPath(deletes.id).is_root:
                entries.append(int(record_id))
                continue
            entry: dict[str, Any] = {}
            JsonPath(deletes.id).set(entry, int(record_id))
            if deletes.time:
                JsonPath(deletes.time).set(entry, write_time(when))
            entries.append(entry)
        served = serve(deletes.paginator, request, None, entries)
        root = JsonPath(deletes.records)
        out: Any = served.items if root.is_root else root.set({}, served.items)
        for path, value in served.fields.items():
            JsonPath(path).set(out, value)
        return json_answer(out, 200, served.headers)

    async def fetch(self, request: Request) -> Response:
        record = self.table.live(request.path_params["id"])
        if record is None:
            return self.refused(Refused("not_found", "no such record"), "fetch")
        spec = self.spec.fetch
        return self.record_answer(record, spec.record if spec else "$", 200)

    # -- writes --------------------------------------------------------------------------

    def _unwrap(self, write: WriteSpec, body: Any) -> dict[str, Any]:
        if write.wrap:
            body = body.get(write.wrap) if isinstance(body, dict) else None
        if not isinstance(body, dict):
            raise Refused("permanent", "the body is not a JSON object")
        return body

    def _required(self, data: dict[str, Any]) -> None:
        for path in self.decl.sandbox.required.get(self.name, []):
            if JsonPath(path).first(data) in (None, ""):
                raise Refused("permanent", f"{path} is required")

    def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        self._required(data)
        return self.table.add(data)

    def do_upsert(self, data: dict[str, Any], key: Any) -> tuple[dict[str, Any], bool]:
        upsert = self.spec.upsert
        assert upsert is not None
        if key in (None, ""):
            raise Refused("permanent", f"{upsert.key} is required to upsert")
        JsonPath(upsert.key).set(data, key)
        found = self.table.find(upsert.key, key)
        if found is None:
            return self.do_create(data), True
        return self.table.update(found, data), False

    def _check_version(self, record_id: str, given: str | None) -> None:
        if given is None:
            return
        current = str(self.table.current_version(record_id))
        if _bare(given) != current:
            raise Refused("stale", f"version {_bare(given)} is outdated (now {current})")

    def do_update(
        self, record_id: str, data: dict[str, Any], version: str | None, replace: bool
    ) -> dict[str, Any]:
        if self.table.live(record_id) is None:
            raise Refused("not_found", f"no record {record_id}")
        self._check_version(record_id, version)
        if self.table.version is not None:
            data = dict(data)
            data.pop(str(self.table.version.steps[0]), None)
        return self.table.update(record_id, data, replace=replace)

    def do_delete(self, record_id: str, version: str | None) -> None:
        if self.table.live(record_id) is None:
            raise Refused("already_deleted", f"no record {record_id}")
        self._check_version(record_id, version)
        self.table.remove(record_id)

    def _given_version(
        self, write: WriteSpec, request: Request, data: dict[str, Any]
    ) -> str | None:
        if write.version == "if_match":
            return request.headers.get("if-match")
        if write.version == "body" and self.table.version is not None:
            value = self.table.version.first(data)
            return None if value is None else str(value)
        return None

    async def create(self, request: Request) -> Response:
        write = self.spec.create
        assert write is not None
        replay, key = self._replayed(request)
        if replay is not None:
            return replay
        try:
            record = self.do_create(self._unwrap(write, await read_json(request)))
        except Refused as exc:
            return self.refused(exc, "create")
        answer = self.record_answer(record, write.record, 201)
        answer.headers["Location"] = (
            f"{request.url.path.rstrip('/')}/{self.table.key.first(record)}"
        )
        return self._remember(key, answer, record, write)

    def _replayed(self, request: Request) -> tuple[Response | None, str | None]:
        header = self.spec.idempotency_header
        key = request.headers.get(header) if header else None
        if key is None:
            return None, None
        stored = self.table.idempotency.get(key)
        if stored is None:
            return None, key
        return json_answer(stored.body, stored.status, stored.headers), key

    def _remember(
        self, key: str | None, response: Response, record: dict[str, Any], write: WriteSpec
    ) -> Response:
        if key is not None and response.status_code < 300:
            root = JsonPath(write.record or "$")
            body = record if root.is_root else root.set({}, record)
            headers = {k: v for k, v in response.headers.items() if k.lower() == "etag"}
            self.table.idempotency[key] = Answer(response.status_code, body, headers)
        return response

    async def upsert(self, request: Request) -> Response:
        write = self.spec.upsert
        assert write is not None
        try:
            data = self._unwrap(write, await read_json(request))
            key = (
                _path_key(request)
                if _path_key(request) is not None
                else JsonPath(write.key).first(data)
            )
            record, made = self.do_upsert(data, key)
        except Refused as exc:
            return self.refused(exc, "upsert")
        return self.record_answer(record, write.record, 201 if made else 200)

    async def update(self, request: Request) -> Response:
        write = self.spec.update
        assert write is not None
        record_id = request.path_params["id"]
        try:
            data = self._unwrap(write, await read_json(request))
            version = self._given_version(write, request, data)
            replace = (write.method or "PATCH") == "PUT" and not write.partial
            record = self.do_update(record_id, data, version, replace)
        except Refused as exc:
            return self.refused(exc, "update")
        return self.record_answer(record, write.record, 200)

    async def delete(self, request: Request) -> Response:
        write = self.spec.delete
        assert write is not None
        try:
            version = self._given_version(write, request, {})
            self.do_delete(request.path_params["id"], version)
        except Refused as exc:
            return self.refused(exc, "delete")
        return Response(status_code=204)

    async def batch(self, request: Request) -> Response:
        from hub.rest.sandbox_batch import batch  # the batch endpoint has its own module

        return await batch(self, request)


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused("permanent", "the body is not JSON") from None


def _path_key(request: Request) -> Any:
    for name, value in request.path_params.items():
        if name.startswith("data__"):
            return value
    return None
