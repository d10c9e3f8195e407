"""The one shape every form post becomes, and the records pulls make of it.

Whatever sent it (a browser, Typeform, Tally, Jotform), an accepted post is a
:class:`Submission`: ``{"submission_id", "submitted_at", "fields": {name: value}}`` plus the
form's name and the provider. It is stored in the inbox as JSON (kind ``submission``); the
inbox is the source of truth the connector's pull reads.

A submission makes two records with the same remote id:

- stream ``submissions`` (entity contact): the form fields at the top level, as named in the
  form (``email``, ``first_name``, ``consent``), so a mapping's ``remote`` is the field name;
  ``_submission`` holds the form, provider, id and time.
- stream ``activities`` (entity activity): ``kind``, ``subject`` (the form name), ``body``
  (JSON of all fields), ``occurred_at``, ``source`` and the ``fields`` themselves, from which
  the activity mapping takes the reference to the sender's contact (``contacts``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.connector import RemoteRecord

KIND = "submission"
META = "_submission"


@dataclass
class Submission:
    submission_id: str
    submitted_at: datetime
    fields: dict[str, Any]
    form: str = ""
    provider: str = "html"
    files: list[dict[str, Any]] = field(default_factory=list)
    """Uploaded files: ``field``, ``filename``, ``content_type``, ``size``, ``sha256`` and the
    content as ``base64``."""

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "submission_id": self.submission_id,
                "submitted_at": self.submitted_at.isoformat(),
                "form": self.form,
                "provider": self.provider,
                "fields": self.fields,
                "files": self.files,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, body: bytes) -> Submission:
        """Read a stored submission; raises ``ValueError`` when ``body`` is not one."""
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("fields"), dict):
            raise ValueError("not a stored form submission")
        return cls(
            submission_id=str(data["submission_id"]),
            submitted_at=parse_time(data.get("submitted_at")) or datetime.now(UTC),
            fields=data["fields"],
            form=str(data.get("form") or ""),
            provider=str(data.get("provider") or "html"),
            files=list(data.get("files") or []),
        )

    def contact_record(self) -> RemoteRecord:
        meta = {
            "id": self.submission_id,
            "form": self.form,
            "provider": self.provider,
            "submitted_at": self.submitted_at.isoformat(),
        }
        return RemoteRecord(
            id=self.submission_id,
            data={**self.fields, META: meta},
            modified_at=self.submitted_at,
        )

    def activity_record(self) -> RemoteRecord:
        body = json.dumps(self.fields, ensure_ascii=False, sort_keys=True, indent=2)
        data = {
            "kind": "form_submission",
            "subject": self.form,
            "body": body,
            "occurred_at": self.submitted_at.isoformat(),
            "source": f"web form {self.form}",
            "fields": self.fields,
        }
        return RemoteRecord(id=self.submission_id, data=data, modified_at=self.submitted_at)


def content_id(fields: dict[str, Any], extra: str = "") -> str:
    """The id of a submission whose sender gives none: a hash of what was sent, so a repeated
    post (a double click, a retry) is recognised as the same submission."""
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256((extra + "\n" + text).encode()).hexdigest()


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from ISO text (``Z`` allowed) or epoch seconds/milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        number = float(value)
        if number > 1e11:  # milliseconds
            number /= 1000
        try:
            return datetime.fromtimestamp(number, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:  # Jotform and others: "2024-05-01 12:30:00"
            parsed = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
