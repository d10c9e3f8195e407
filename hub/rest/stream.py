"""A declared stream made ready to run: paths compiled, formats chosen, hooks in place."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

import httpx

from hub.connector import Page, RemoteRecord, Stream
from hub.rest.errors import OPS, DeclaredClassifier, ErrorRule
from hub.rest.jsonpath import JsonPath, kind_of
from hub.rest.load import Loaded
from hub.rest.model import StatusDeletes, StreamSpec, TombstoneDeletes
from hub.rest.paginators import CustomPaginator, Paginator
from hub.rest.template import Template
from hub.rest.times import formatter, parser, precision, zone
from hub.rest.window import Window, key_of

__all__ = ["CompiledStream", "Lister", "Read", "compile_stream", "hub_stream"]

Read = tuple[str, RemoteRecord | None, datetime | None]
"""A listed record: ``(id, record or None for a tombstone, change time)``."""
Lister = Callable[[Iterable[Any], Page, Window | None, dict[str, str] | None], None]
"""``lister(raws, page, window, seen)``: see :meth:`CompiledStream.lister`."""

_MISSING = object()
_ALIVE = (None, False, "", 0)
"""Values of a tombstone field that say the record is not deleted."""


def hub_stream(name: str, spec: StreamSpec, webhooks: bool) -> Stream:
    """The ``hub.connector.Stream`` a declared stream offers."""
    return Stream(
        name=name,
        entity=spec.entity,
        incremental=spec.incremental is not None,
        can_create=spec.create is not None or spec.upsert is not None,
        can_update=spec.update is not None,
        can_delete=spec.delete is not None,
        webhooks=webhooks,
    )


@dataclass
class CompiledStream:
    name: str
    spec: StreamSpec
    stream: Stream
    path: str
    params: dict[str, Any]
    records: JsonPath
    key: JsonPath
    paginator: Paginator
    rules: list[ErrorRule]
    classifiers: dict[str, DeclaredClassifier]
    settings: dict[str, Any]
    version_field: JsonPath | None = None
    version_header: str | None = None
    modified: JsonPath | None = None
    parse_modified: Callable[[Any], datetime | None] | None = None
    cursor_field: JsonPath | None = None
    parse_cursor: Callable[[Any], datetime | None] | None = None
    format_since: Callable[[datetime], Any] | None = None
    since_step: timedelta = timedelta(seconds=1)
    gone: Callable[[dict[str, Any]], bool] | None = None
    transform: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    templates: dict[str, Template] = field(default_factory=dict)
    modified_iso_zone: tzinfo | None = None
    """The zone of ``modified_at`` times written in ISO without an offset (``iso`` only)."""
    _lister: Lister | None = None

    def template(self, text: str) -> Template:
        found = self.templates.get(text)
        if found is None:
            found = self.templates[text] = Template(text)
        return found

    def render(self, text: str, **values: Any) -> str:
        """A path with ``{id}``, ``{data.x}`` and ``{settings.x}`` filled (URL-quoted)."""
        return self.template(text).render({"settings": self.settings, **values}, quote_values=True)

    def remote_id(self, data: Any) -> str | None:
        value = self.key.first(data)
        return None if value is None or value == "" else str(value)

    def version_of(self, data: Any, response: httpx.Response | None = None) -> str | None:
        if self.version_field is not None:
            value = self.version_field.first(data)
            return None if value is None else str(value)
        if self.version_header is not None and response is not None:
            return response.headers.get(self.version_header)
        return None

    @property
    def keyed(self) -> bool:
        """Whether the boundary tells a record by its version (else by a content hash)."""
        return self.version_field is not None

    def read(self, raw: Any) -> Read | None:
        """One listed record: ``(id, record, changed)``; ``record`` is ``None`` for a
        tombstone. ``None`` when the transform drops it or it is not an object."""
        page, window = Page(), Window(overlap=timedelta(0), step=timedelta(0), cap=1)
        self.lister()((raw,), page, window, None)
        if page.records:
            record_id, record = page.records[0].id, page.records[0]
        elif page.deleted:
            record_id, record = page.deleted[0], None
        else:
            return None
        # a record with a change time is in the window, which holds that time
        changed = window.seen[record_id][0] if record_id in window.seen else None
        return record_id, record, changed

    def lister(self) -> Lister:
        """The loop every listed record goes through: ``lister(raws, page, window, seen)``
        reads one answer's records and tombstones into ``page``; with a ``window`` (an
        incremental stream) it remembers those near the newest change and, with ``seen``
        (an incremental pull), skips the ones the boundary holds unchanged."""
        if self._lister is None:
            self._lister = self._make_lister()
        return self._lister

    def _make_lister(self) -> Lister:
        """The listing loop made for this stream once: only the steps it declares, plain
        keys read by subscript (no method call per key; a missing one reads as ``None``),
        the boundary kept inline (no call, no tuple per record).

        The boundary is :meth:`Window.take`'s, with a shortcut for the usual listing, in
        time order with neither tombstones nor records seen before: while a page goes so,
        its records are all admitted, in order, and each one's change time is its
        ``modified_at``, so the page's records alone tell the window what to keep
        (:meth:`Window.keep_listed`). At the first record that does not, the loop notes
        what it admitted so far and goes on as :meth:`Window.take` does."""
        transform, gone = self.transform, self.gone
        deletes = self.spec.deletes
        # a tombstone field without listed values (``deleted_at``) is read inline
        gone_key = None
        if isinstance(deletes, TombstoneDeletes) and not deletes.values:
            gone_key = _plain(JsonPath(deletes.field))
            gone = None if gone_key is not None else gone
        id_key, get_id = _plain(self.key), self.key.first
        id_text = self.key.text if self.key.text.startswith("$") else f"$.{self.key.text}"
        version_key, get_version = _plain(self.version_field), _first(self.version_field)
        modified = _timer(self.modified, self.parse_modified)
        changed_at = _timer(self.cursor_field, self.parse_cursor)
        # the usual case, an ISO time in a plain field, is read inline
        iso_key = _plain(self.modified) if self.modified_iso_zone is not None else None
        zone, from_iso = self.modified_iso_zone, datetime.fromisoformat
        keyed = self.keyed
        # with a cursor field the change time is not ``modified_at``: no shortcut
        ordered_by_modified = changed_at is None

        def lister(
            raws: Iterable[Any], page: Page, window: Window | None, seen: dict[str, str] | None
        ) -> None:
            records, deleted = page.records, page.deleted
            add = records.append
            first = len(records)
            admitted: list[Read] = []
            note = admitted.append
            high = floor = span = None
            if window is not None:
                high, floor, span = window.high, window.floor(), window.span
            # the shortcut holds while every record so far was admitted in time order
            listed = window is not None and ordered_by_modified
            for n, raw in enumerate(raws, 1):
                if transform is not None:
                    raw = transform(raw)
                    if raw is None:
                        continue  # dropped on purpose
                if type(raw) is not dict and not isinstance(raw, dict):
                    page.problems.append(f"record {n} is not an object but {kind_of(raw)}")
                    continue
                if id_key is None:
                    value = get_id(raw)
                else:
                    try:
                        value = raw[id_key]
                    except KeyError:
                        value = None
                if type(value) is int:  # the usual id first: one check
                    record_id = str(value)
                elif value is None or value == "":
                    page.problems.append(f"record {n} has no id at {id_text}")
                    continue
                else:
                    record_id = value if type(value) is str else str(value)
                moment = None
                if iso_key is not None:
                    try:
                        moment = from_iso(raw[iso_key])
                    except (KeyError, TypeError, ValueError):  # missing, not text, unreadable
                        moment = None
                    else:
                        if moment.tzinfo is None:
                            moment = moment.replace(tzinfo=zone)
                elif modified is not None:
                    moment = modified(raw)
                changed = changed_at(raw) if changed_at is not None else moment
                if gone_key is not None:
                    alive = gone_key not in raw or raw[gone_key] in _ALIVE
                else:
                    alive = gone is None or not gone(raw)
                if alive:
                    if version_key is not None:
                        try:
                            version = raw[version_key]
                        except KeyError:
                            version = None
                    else:
                        version = get_version(raw) if get_version is not None else None
                    # the usual version, a number, is told by one check
                    if type(version) is int or (version is not None and type(version) is not str):
                        version = str(version)
                    record: RemoteRecord | None = RemoteRecord(record_id, raw, version, moment)
                else:
                    record = None
                if listed:
                    if (
                        record is not None
                        and changed is not None
                        and not (seen and record_id in seen)
                    ):
                        if high is None or changed > high:
                            high = changed
                            add(record)
                            continue
                        if changed == high:
                            add(record)
                            continue
                    # not the usual listing after all: what the shortcut admitted, noted
                    listed = False
                    admitted = [(r.id, r, r.modified_at) for r in records[first:]]
                    note = admitted.append
                    floor = None
                if changed is not None and window is not None:
                    # Window.take's boundary, record by record
                    if high is None or changed >= high:
                        if high is None or changed > high:
                            high = changed
                            floor = None
                        note((record_id, record, changed))
                    else:
                        if floor is None:
                            floor = high - span  # type: ignore[operator]
                        if changed >= floor:
                            note((record_id, record, changed))
                    if seen and record_id in seen and seen[record_id] == key_of(record, keyed):
                        continue  # pulled before, unchanged since: the inclusive boundary
                if record is None:
                    deleted.append(record_id)
                else:
                    add(record)
            if window is None:
                return
            if listed:
                window.keep_listed(records, first, high, keyed)
            elif admitted:
                window.keep(admitted, high, keyed)

        return lister


def _plain(path: JsonPath | None) -> str | None:
    """The key of a one-key path (``id``), read with ``dict.get``; else ``None``."""
    if path is not None and len(path.steps) == 1 and isinstance(path.steps[0], str):
        return path.steps[0]
    return None


def _first(path: JsonPath | None) -> Callable[[Any], Any] | None:
    return path.first if path is not None else None


def _timer(
    path: JsonPath | None, parse: Callable[[Any], datetime | None] | None
) -> Callable[[Any], datetime | None] | None:
    if path is None or parse is None:
        return None
    key = _plain(path)
    if key is not None:
        return lambda raw: parse(raw.get(key))
    get = path.first
    return lambda raw: parse(get(raw))


def _gone(spec: StreamSpec) -> Callable[[dict[str, Any]], bool] | None:
    deletes = spec.deletes
    if isinstance(deletes, TombstoneDeletes | StatusDeletes):
        path = JsonPath(deletes.field)
        key = _plain(path)
        values = list(deletes.values)
        if values:
            return lambda raw: path.first(raw, _MISSING) in values
        if key is not None:
            return lambda raw: raw.get(key) not in _ALIVE
        return lambda raw: path.first(raw, None) not in _ALIVE
    return None


def compile_stream(
    loaded: Loaded, name: str, settings: dict[str, Any], webhooks: bool
) -> CompiledStream:
    decl = loaded.spec
    spec = decl.streams[name]
    rules = [*spec.errors, *decl.errors]
    client = decl.client
    classifiers = {
        op: DeclaredClassifier(
            rules, op, retry_after=client.retry_after, message=client.error_message
        )
        for op in OPS
    }
    paginator: Any = spec.paginator
    if isinstance(paginator, CustomPaginator):
        paginator = loaded.hooks[paginator.hook](**paginator.options)
    values = {"settings": settings}
    compiled = CompiledStream(
        name=name,
        spec=spec,
        stream=hub_stream(name, spec, webhooks),
        path=Template(spec.path).render(values, quote_values=False),
        params={k: v for k, v in spec.params.items()},
        records=JsonPath(spec.records),
        key=JsonPath(spec.primary_key),
        paginator=paginator,
        rules=rules,
        classifiers=classifiers,
        settings=settings,
        gone=_gone(spec),
        transform=loaded.hooks.get(spec.transform) if spec.transform else None,
    )
    if spec.version is not None:
        if spec.version.field is not None:
            compiled.version_field = JsonPath(spec.version.field)
        compiled.version_header = spec.version.header
    if spec.modified_at is not None:
        compiled.modified = JsonPath(spec.modified_at.field)
        compiled.parse_modified = parser(spec.modified_at.format, spec.modified_at.timezone)
        if spec.modified_at.format == "iso":
            compiled.modified_iso_zone = zone(spec.modified_at.timezone)
    inc = spec.incremental
    if inc is not None:
        base = spec.modified_at
        fmt = inc.format or (base.format if base else "iso")
        tz = base.timezone if base else "UTC"
        if inc.cursor_field is not None:
            compiled.cursor_field = JsonPath(inc.cursor_field)
            compiled.parse_cursor = parser(base.format if base else fmt, tz)
        if inc.send == "if_modified_since":
            fmt = "http_date"
        compiled.format_since = formatter(fmt, tz)
        compiled.since_step = precision(fmt)
    return compiled
