"""Reading posts: browser forms and the webhooks of Typeform, Tally and Jotform.

Each reader checks what the sender proves (a signature; the key in the URL was checked
before) and turns the body into form fields or a :class:`Submission`. An authentic body
that cannot be read raises ``MalformedDelivery`` (kept in the inbox as ``malformed``);
a signature that does not verify raises ``WebhookRejected(401)``.

- **Typeform**: ``Typeform-Signature: sha256=<base64 HMAC-SHA256 of the raw body>``; event
  ``form_response``; answers in ``form_response.answers``, each named by its field's ``ref``
  (else its id); hidden fields and variables join them. Id: ``form_response.token``.
- **Tally**: ``Tally-Signature: <base64 HMAC-SHA256 of the raw body>`` (checked when a
  signing secret is set); event ``FORM_RESPONSE``; answers in ``data.fields``, named by
  ``label`` (else ``key``), choice ids read as their option texts. Id: ``data.responseId``.
- **Jotform**: multipart with ``formID``, ``submissionID`` and ``rawRequest``, a JSON string
  whose answers are keyed ``q<N>_<name>``: the field is ``<name>``. No signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from connectors.webforms.guard import FormRefused
from connectors.webforms.settings import WebFormsSettings
from connectors.webforms.submission import Submission, parse_time
from hub.webhooks import MalformedDelivery, hmac_sha256, parse_json, verify_signature

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
JSON_TYPES = frozenset({"application/json", "text/json"})
_JOTFORM_KEY = re.compile(r"^q\d+_(.+)$")


@dataclass
class Fields:
    """What a browser posted: fields by name (text, or a list for repeated names), files."""

    values: dict[str, Any]
    files: list[dict[str, Any]] = field(default_factory=list)


def content_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def _bytes_stream(body: bytes) -> AsyncGenerator[bytes, None]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body
        yield b""

    return stream()


def _put(values: dict[str, Any], name: str, value: Any) -> None:
    """Repeated names (checkbox groups) collect into a list."""
    if name not in values:
        values[name] = value
    elif isinstance(values[name], list):
        values[name].append(value)
    else:
        values[name] = [values[name], value]


async def _multipart(
    headers: Mapping[str, str], body: bytes, max_file_bytes: int, delivery_id: str
) -> Fields:
    parser = MultiPartParser(
        Headers(headers=dict(headers)), _bytes_stream(body), max_files=20, max_fields=500
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise MalformedDelivery(
            f"body is not valid multipart form data: {exc}", delivery_id
        ) from None
    out = Fields({})
    try:
        for name, value in form.multi_items():
            if not isinstance(value, UploadFile):
                _put(out.values, name, value)
                continue
            content = await value.read()
            if not content and not value.filename:
                continue  # a file input left empty
            if len(content) > max_file_bytes:
                raise FormRefused(
                    413,
                    "file_refused" if max_file_bytes == 0 else "file_too_large",
                    "this form accepts no file uploads"
                    if max_file_bytes == 0
                    else f"files may be at most {max_file_bytes} bytes",
                )
            out.files.append(
                {
                    "field": name,
                    "filename": value.filename or "",
                    "content_type": value.content_type or "application/octet-stream",
                    "size": len(content),
                    "sha256": hashlib.sha256(content).hexdigest(),
                    "base64": base64.b64encode(content).decode(),
                }
            )
            _put(out.values, name, value.filename or "")
    finally:
        await form.close()
    return out


def _urlencoded(body: bytes, delivery_id: str) -> Fields:
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedDelivery(f"body is not a valid form: {exc}", delivery_id) from None
    return Fields({k: v[0] if len(v) == 1 else v for k, v in parsed.items()})


def _json_fields(body: bytes, delivery_id: str) -> Fields:
    data = parse_json(body, delivery_id)
    if not isinstance(data, dict):
        raise MalformedDelivery("a JSON post must be an object of field names", delivery_id)
    nested = data.get("fields")
    if isinstance(nested, dict):  # {"fields": {...}} as well as the fields themselves
        data = {**{k: v for k, v in data.items() if k != "fields"}, **nested}
    return Fields(data)


async def browser_fields(
    settings: WebFormsSettings, headers: Mapping[str, str], body: bytes, delivery_id: str
) -> Fields:
    """The fields of a browser (or script) post, by its content type."""
    kind = content_type(headers)
    if kind in JSON_TYPES:
        return _json_fields(body, delivery_id)
    if settings.provider == "json":
        raise MalformedDelivery(f"this form takes JSON posts, not {kind or 'no type'}", delivery_id)
    if kind == "application/x-www-form-urlencoded":
        return _urlencoded(body, delivery_id)
    if kind == "multipart/form-data":
        return await _multipart(headers, body, settings.max_file_bytes, delivery_id)
    raise MalformedDelivery(
        f"content type {kind or 'missing'!r} is not a form post "
        "(use application/x-www-form-urlencoded, multipart/form-data or application/json)",
        delivery_id,
    )


def _check_form(settings: WebFormsSettings, given: Any, delivery_id: str) -> None:
    if settings.form_id and str(given or "") != settings.form_id:
        raise MalformedDelivery(
            f"submission of form {given!r}, but this connection takes form {settings.form_id!r}",
            delivery_id,
        )


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MalformedDelivery("the body is JSON but not an object")
    return data


def _signed(settings: WebFormsSettings, header: str | None, body: bytes, prefix: str) -> None:
    secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""
    verify_signature(prefix + hmac_sha256(secret, body, "base64"), header)


# ---- Typeform ----------------------------------------------------------------------------

_TYPEFORM_VALUE = {
    "text": "text",
    "email": "email",
    "url": "url",
    "file_url": "file_url",
    "number": "number",
    "boolean": "boolean",
    "date": "date",
    "phone_number": "phone_number",
    "payment": "payment",
}


def _typeform_answer(answer: dict[str, Any]) -> Any:
    kind = answer.get("type")
    if kind == "choice":
        choice = answer.get("choice") or {}
        return choice.get("label") or choice.get("other")
    if kind == "choices":
        choices = answer.get("choices") or {}
        labels = list(choices.get("labels") or [])
        if choices.get("other"):
            labels.append(choices["other"])
        return labels
    key = _TYPEFORM_VALUE.get(str(kind))
    return answer.get(key) if key else None


def typeform(
    settings: WebFormsSettings, headers: Mapping[str, str], body: bytes, received: datetime
) -> Submission:
    _signed(settings, headers.get("typeform-signature"), body, "sha256=")
    data = _object(parse_json(body))
    response = data.get("form_response")
    if data.get("event_type") != "form_response" or not isinstance(response, dict):
        raise MalformedDelivery("not a Typeform form_response event")
    token = response.get("token")
    if not token:
        raise MalformedDelivery("Typeform form_response without a token")
    _check_form(settings, response.get("form_id"), f"typeform:{token}")
    fields: dict[str, Any] = {}
    for answer in response.get("answers") or []:
        if not isinstance(answer, dict) or not isinstance(answer.get("field"), dict):
            raise MalformedDelivery("a Typeform answer without its field", f"typeform:{token}")
        ref = answer["field"].get("ref") or answer["field"].get("id")
        fields[str(ref)] = _typeform_answer(answer)
    for name, value in (response.get("hidden") or {}).items():
        fields.setdefault(str(name), value)
    return Submission(
        submission_id=f"typeform:{token}",
        submitted_at=parse_time(response.get("submitted_at")) or received,
        fields=fields,
        provider="typeform",
    )


# ---- Tally -------------------------------------------------------------------------------


def _tally_value(item: dict[str, Any]) -> Any:
    value = item.get("value")
    options = {o.get("id"): o.get("text") for o in item.get("options") or [] if isinstance(o, dict)}
    if options and isinstance(value, list):
        return [options.get(v, v) for v in value]
    if options and isinstance(value, str) and value in options:
        return options[value]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [v.get("url") or v.get("name") for v in value]  # file uploads
    return value


def tally(
    settings: WebFormsSettings, headers: Mapping[str, str], body: bytes, received: datetime
) -> Submission:
    if settings.signing_secret:
        _signed(settings, headers.get("tally-signature"), body, "")
    data = _object(parse_json(body))
    inner = data.get("data")
    if data.get("eventType") != "FORM_RESPONSE" or not isinstance(inner, dict):
        raise MalformedDelivery("not a Tally FORM_RESPONSE event")
    response_id = inner.get("responseId") or inner.get("submissionId") or data.get("eventId")
    if not response_id:
        raise MalformedDelivery("Tally FORM_RESPONSE without a responseId")
    delivery_id = f"tally:{response_id}"
    _check_form(settings, inner.get("formId"), delivery_id)
    items = inner.get("fields")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise MalformedDelivery("Tally data.fields is not a list of fields", delivery_id)
    labels = [str(i.get("label") or "") for i in items]
    fields: dict[str, Any] = {}
    for item, label in zip(items, labels, strict=True):
        # A label used twice (or none) cannot name a field: the field's key does.
        name = label if label and labels.count(label) == 1 else str(item.get("key") or label)
        fields[name] = _tally_value(item)
    return Submission(
        submission_id=delivery_id,
        submitted_at=parse_time(inner.get("createdAt") or data.get("createdAt")) or received,
        fields=fields,
        provider="tally",
    )


# ---- Jotform -----------------------------------------------------------------------------


async def jotform(
    settings: WebFormsSettings, headers: Mapping[str, str], body: bytes, received: datetime
) -> Submission:
    kind = content_type(headers)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if kind == "multipart/form-data":
        posted = (await _multipart(headers, body, settings.max_file_bytes, digest)).values
    elif kind == "application/x-www-form-urlencoded":
        posted = _urlencoded(body, digest).values
    else:
        raise MalformedDelivery(f"a Jotform webhook is multipart form data, not {kind!r}", digest)
    submission_id = posted.get("submissionID")
    if not submission_id or not isinstance(submission_id, str):
        raise MalformedDelivery("Jotform post without a submissionID", digest)
    delivery_id = f"jotform:{submission_id}"
    _check_form(settings, posted.get("formID"), delivery_id)
    try:
        raw = json.loads(posted.get("rawRequest") or "")
    except (TypeError, ValueError):
        raise MalformedDelivery("Jotform rawRequest is not a JSON string", delivery_id) from None
    if not isinstance(raw, dict):
        raise MalformedDelivery("Jotform rawRequest is not a JSON object", delivery_id)
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        match = _JOTFORM_KEY.match(key)
        if match:  # the rest is Jotform's bookkeeping (slug, event_id, timers)
            fields[match.group(1)] = value
    return Submission(
        submission_id=delivery_id,
        submitted_at=parse_time(raw.get("submitDate")) or received,
        fields=fields,
        provider="jotform",
    )
