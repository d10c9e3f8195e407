"""Checks of a declaration beyond its shape: placeholders, JSON paths, time formats, hooks,
names that refer to other parts, and files it names. Each problem is ``(location, message)``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from hub.rest.auth import BasicAuth, OAuth2Auth
from hub.rest.base import resolve_hook
from hub.rest.jsonpath import JsonPath, JsonPathError
from hub.rest.model import Declaration, EndpointDeletes, StreamSpec
from hub.rest.paginators import (
    CursorPaginator,
    CustomPaginator,
    HeaderCursorPaginator,
    NextUrlPaginator,
    Paginator,
)
from hub.rest.template import Template, TemplateError
from hub.rest.times import check_format, zone
from hub.rest.webhooks import CustomSignature, HmacSignature, UrlSecretSignature

__all__ = ["check"]

Loc = tuple[str | int, ...]
Found = list[tuple[Loc, str]]
WRITE_OPS = ("create", "update", "delete", "upsert")


def check(spec: Declaration, base_dir: Path | None, hooks: dict[str, Any]) -> Found:
    """Every problem of ``spec``; resolved hooks are put into ``hooks`` by dotted path."""
    found: Found = []
    settings = set(spec.settings) | {"base_url"}
    plain = {"settings": settings}
    client = spec.client
    _template(found, ("client", "base_url"), client.base_url, plain)
    for name, value in client.headers.items():
        _template(found, ("client", "headers", name), value, plain)
    if client.limit_key:
        _template(found, ("client", "limit_key"), client.limit_key, plain)
    if isinstance(client.auth, BasicAuth):
        creds: dict[str, set[str] | None] = {"settings": settings, "secret": None}
        _template(found, ("client", "auth", "username"), client.auth.username, creds)
        _template(found, ("client", "auth", "password"), client.auth.password, creds)
    _path(found, ("client", "error_message"), client.error_message)
    for where, oauth in (("auth", client.auth), ("oauth", client.oauth)):
        if isinstance(oauth, OAuth2Auth):  # endpoints may name the connection's settings
            for key in ("authorize_url", "token_url", "revocation_url"):
                text = getattr(oauth, key)
                if text:
                    _template(found, ("client", where, key), text, plain)
    for name, stream in spec.streams.items():
        found.extend(_stream(("streams", name), stream, settings, base_dir, hooks))
    if spec.webhooks is not None:
        found.extend(_webhooks(spec, settings, hooks, base_dir))
    for name, fake in spec.sandbox.streams.items():
        if name not in spec.streams:
            found.append((("sandbox", "streams", name), _no_stream(name, spec)))
        for key, text in fake.fields.items():
            _fake(found, ("sandbox", "streams", name, "fields", key), text)
    for name in spec.sandbox.required:
        if name not in spec.streams:
            found.append((("sandbox", "required", name), _no_stream(name, spec)))
    if spec.sandbox.seed and base_dir is not None and not (base_dir / spec.sandbox.seed).is_file():
        found.append((("sandbox", "seed"), f"seed file {spec.sandbox.seed!r} not found"))
    return found


def _no_stream(name: str, spec: Declaration) -> str:
    return f"no stream named {name!r} (streams: {', '.join(spec.streams)})"


def _template(found: Found, loc: Loc, text: str, roots: Mapping[str, set[str] | None]) -> None:
    try:
        Template(text).check(roots)
    except TemplateError as exc:
        found.append((loc, str(exc)))


def fake_values() -> list[str]:
    """What a made-up record's ``fields`` may name: the attributes of a fake person
    (imported here: the sandboxes need the web stack, loading a declaration does not)."""
    from hub.sandbox.people import Person

    return sorted([*(f.name for f in fields(Person)), "name"])


def _fake(found: Found, loc: Loc, text: str) -> None:
    try:
        template = Template(text)
    except TemplateError as exc:
        found.append((loc, str(exc)))
        return
    known = fake_values()
    for name in template.names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {{{close[0]}}}? " if close else ""
            valid = ", ".join(f"{{{v}}}" for v in known)
            found.append((loc, f"{{{name}}}: no such fake value ({hint}valid: {valid})"))


def _path(found: Found, loc: Loc, text: str | None) -> None:
    if text is None:
        return
    try:
        JsonPath(text)
    except JsonPathError as exc:
        found.append((loc, str(exc)))


def _time(found: Found, loc: Loc, fmt: str | None) -> None:
    if fmt is None:
        return
    try:
        check_format(fmt)
    except ValueError as exc:
        found.append((loc, str(exc)))


def _hook(found: Found, loc: Loc, dotted: str, base_dir: Path | None, hooks: dict[str, Any]) -> Any:
    try:
        hooks[dotted] = resolve_hook(dotted, base_dir)
    except ValueError as exc:
        found.append((loc, str(exc)))
        return None
    return hooks[dotted]


def _stream(
    at: Loc, s: StreamSpec, settings: set[str], base_dir: Path | None, hooks: dict[str, Any]
) -> Iterator[tuple[Loc, str]]:
    found: Found = []
    plain = {"settings": settings}
    item = {"settings": settings, "id": None, "data": None}
    _template(found, (*at, "path"), s.path, plain)
    for key in ("records", "primary_key"):
        _path(found, (*at, key), getattr(s, key))
    if s.version is not None:
        _path(found, (*at, "version", "field"), s.version.field)
    if s.modified_at is not None:
        _path(found, (*at, "modified_at", "field"), s.modified_at.field)
        _time(found, (*at, "modified_at", "format"), s.modified_at.format)
        try:
            zone(s.modified_at.timezone)
        except ValueError as exc:
            found.append(((*at, "modified_at", "timezone"), str(exc)))
    if s.incremental is not None:
        _path(found, (*at, "incremental", "cursor_field"), s.incremental.cursor_field)
        _time(found, (*at, "incremental", "format"), s.incremental.format)
    paginator = s.paginator
    for key in ("has_more", "end", "total", "total_pages"):
        _path(found, (*at, "paginator", key), getattr(paginator, key, None))
    if isinstance(paginator, CursorPaginator):
        _path(found, (*at, "paginator", "cursor"), paginator.cursor)
    if isinstance(paginator, NextUrlPaginator):
        _path(found, (*at, "paginator", "next"), paginator.next)
    body_cursor = isinstance(paginator, CursorPaginator | HeaderCursorPaginator) and (
        paginator.send == "body"
    )
    if body_cursor and s.method != "POST":
        message = "a cursor sent in the body needs method = 'POST'"
        found.append(((*at, "paginator", "send"), message))
    if isinstance(paginator, CustomPaginator):
        made = _hook(found, (*at, "paginator", "hook"), paginator.hook, base_dir, hooks)
        if made is not None:
            try:
                instance = made(**paginator.options)
            except Exception as exc:
                found.append(((*at, "paginator", "options"), f"{paginator.hook}: {exc}"))
            else:
                if not isinstance(instance, Paginator):
                    found.append(
                        ((*at, "paginator", "hook"), f"{paginator.hook} has no start()/advance()")
                    )
    deletes = s.deletes
    if deletes is not None:
        for key in ("field", "records", "id", "time"):
            _path(found, (*at, "deletes", key), getattr(deletes, key, None))
        if isinstance(deletes, EndpointDeletes):
            _template(found, (*at, "deletes", "path"), deletes.path, plain)
            _time(found, (*at, "deletes", "format"), deletes.format)
    if s.fetch is not None:
        _template(found, (*at, "fetch", "path"), s.fetch.path or "", item)
        _path(found, (*at, "fetch", "record"), s.fetch.record)
    for op in WRITE_OPS:
        write = getattr(s, op)
        if write is None:
            continue
        if write.path is not None:
            _template(found, (*at, op, "path"), write.path, item)
        _path(found, (*at, op, "record"), write.record)
        if write.version != "none" and s.version is None:
            found.append(((*at, op, "version"), "sending a version needs the stream's 'version'"))
        if write.version == "body" and s.version is not None and s.version.field is None:
            found.append(((*at, op, "version"), "version = 'body' needs a version 'field'"))
        if write.read_first and s.fetch is None:
            found.append(((*at, op, "read_first"), "read_first needs the stream's 'fetch'"))
        for key, text in write.set.items():
            _path(found, (*at, op, "set", key), key)
            _template(
                found,
                (*at, op, "set", key),
                text,
                {"settings": settings, "hub": {"id"}, "data": None},
            )
    if s.upsert is not None:
        _path(found, (*at, "upsert", "key"), s.upsert.key)
    if s.batch is not None:
        _template(found, (*at, "batch", "path"), s.batch.path, plain)
        for key in ("items", "results", "record", "error", "status", "ref", "op_field"):
            _path(found, (*at, "batch", key), getattr(s.batch, key))
        for op in s.batch.ops:
            if getattr(s, op) is None and not (op == "create" and s.upsert is not None):
                found.append(((*at, "batch", "ops"), f"batch of {op!r} needs the stream's {op!r}"))
    if s.transform is not None:
        _hook(found, (*at, "transform"), s.transform, base_dir, hooks)
    if s.mapping is not None and base_dir is not None and not (base_dir / s.mapping).is_file():
        found.append(((*at, "mapping"), f"mapping file {s.mapping!r} not found"))
    yield from found


def _webhooks(
    spec: Declaration, settings: set[str], hooks: dict[str, Any], base_dir: Path | None
) -> Iterator[tuple[Loc, str]]:
    found: Found = []
    hooks_spec = spec.webhooks
    assert hooks_spec is not None
    plain = {"settings": settings}
    sig = hooks_spec.signature
    at: Loc = ("webhooks", "signature")
    if isinstance(sig, HmacSignature | UrlSecretSignature):
        _template(found, (*at, "secret"), sig.secret, plain)
    if isinstance(sig, HmacSignature) and sig.signed == "url+body":
        _template(found, (*at, "url"), sig.url, plain)
    if isinstance(sig, CustomSignature):
        _hook(found, (*at, "hook"), sig.hook, base_dir, hooks)
        if sig.secret:
            _template(found, (*at, "secret"), sig.secret, plain)
    for key in ("id", "event", "ids"):
        _path(found, ("webhooks", key), getattr(hooks_spec, key))
    if hooks_spec.challenge is not None:
        _path(found, ("webhooks", "challenge", "field"), hooks_spec.challenge.field)
    for event, stream in hooks_spec.events.items():
        if stream not in spec.streams:
            found.append((("webhooks", "events", event), _no_stream(stream, spec)))
    yield from found


def run_templates(spec: Declaration) -> Iterator[tuple[Loc, str]]:
    """Every template a run fills from the connection's settings, with where it is: the
    client's, its auth's and the streams'. Webhook secrets (an unset one refuses webhooks
    with its own message) and OAuth endpoints (``crmhub connect`` fills them) are not."""
    client = spec.client
    yield ("client", "base_url"), client.base_url
    for name, value in client.headers.items():
        yield ("client", "headers", name), value
    if client.limit_key:
        yield ("client", "limit_key"), client.limit_key
    if isinstance(client.auth, BasicAuth):
        yield ("client", "auth", "username"), client.auth.username
        yield ("client", "auth", "password"), client.auth.password
    for name, s in spec.streams.items():
        at: Loc = ("streams", name)
        yield (*at, "path"), s.path
        if isinstance(s.deletes, EndpointDeletes):
            yield (*at, "deletes", "path"), s.deletes.path
        if s.fetch is not None and s.fetch.path:
            yield (*at, "fetch", "path"), s.fetch.path
        for op in WRITE_OPS:
            write = getattr(s, op)
            if write is None:
                continue
            if write.path is not None:
                yield (*at, op, "path"), write.path
            for key, text in write.set.items():
                yield (*at, op, "set", key), text
        if s.batch is not None:
            yield (*at, "batch", "path"), s.batch.path


def settings_used(spec: Declaration) -> dict[str, list[Loc]]:
    """Where a run fills in each setting, by setting name (see :func:`run_templates`)."""
    used: dict[str, list[Loc]] = {}
    for loc, text in run_templates(spec):
        try:
            names = Template(text).names
        except TemplateError:
            continue  # reported by check()
        for name in names:
            root, _, rest = name.partition(".")
            if root == "settings" and rest:
                used.setdefault(rest.partition(".")[0], []).append(loc)
    return used
