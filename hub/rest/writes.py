"""The write side of a stream: ``create``, ``update``, ``delete``, ``upsert`` and ``batch``.

Defaults follow REST habits: create ``POST <path>``; update ``PATCH <path>/{id}``; delete
``DELETE <path>/{id}``; upsert ``PUT`` to a path naming the natural key
(``/contacts/by-email/{data.email}``). Paths are templates: ``{id}`` is the remote id,
``{data.x}`` a field of the record written, ``{settings.x}`` a connection setting.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hub.rest.base import Spec

__all__ = ["BatchSpec", "UpsertSpec", "WriteSpec"]

Method = Literal["POST", "PUT", "PATCH", "DELETE"]


class WriteSpec(Spec):
    method: Method | None = None
    path: str | None = None
    params: dict[str, str | int | float | bool] = {}
    wrap: str | None = None
    """Send the record under this key (``{"contact": {...}}``) instead of as the body."""
    record: str | None = "$"
    """JSON path of the written record in the answer (its id, version and data); ``None``
    when the answer carries none."""
    version: Literal["if_match", "body", "none"] = "none"
    """How the version the hub last saw is sent: an ``If-Match`` header, the version field
    in the body, or not at all (the write is then unconditional)."""
    read_first: bool = False
    """For ``PUT`` updates of APIs that replace the whole record: read it, apply the
    changes to it and send all of it."""
    partial: bool = False
    """A ``PUT`` that changes only the fields it carries (Zendesk): send just the change."""
    set: dict[str, str] = {}
    """Fields given to every body of this write that lacks them, from templates:
    ``{hub.id}`` is the hub's id of the record (an ``external_id`` that makes creates
    idempotent), ``{data.x}`` a field of the record (a ticket's first comment from its
    subject); a template whose field the record lacks gives nothing."""


class UpsertSpec(WriteSpec):
    """Creates go here instead: the remote finds the record by ``key`` or makes it, so a
    create retried after a crash cannot make a second one."""

    path: str
    """Where upserts go: ``/contacts/by-email/{data.email}``, or an upsert endpoint."""
    key: str
    """Field of the record that the remote matches on (``email``)."""


class BatchSpec(Spec):
    """One request carrying many writes, answered item by item."""

    ops: list[Literal["create", "update", "delete", "upsert"]] = Field(["create"], min_length=1)
    method: Method = "POST"
    path: str
    size: int = Field(100, ge=1)
    items: str = "$.items"
    """JSON path in the request body holding the list (``$`` when the body is the list)."""
    op_field: str | None = None
    """Field of each item naming its operation (batches that mix creates and updates)."""
    results: str = "$.results"
    """JSON path of the per-item answers, in the order of the items."""
    ref: str | None = None
    """Field each item carries its correlation key in, echoed by its answer (then answers
    are matched by it instead of by position)."""
    error: str | None = "error"
    """Field of an item's answer that, when present and not null, says it failed."""
    status: str | None = "status"
    """Field of an item's answer holding its HTTP-like status, judged by the error rules."""
    record: str = "$"
    """JSON path of the record inside a successful item's answer."""
    item_key: str | None = None
    """Field each item carries its idempotency key in."""

    @model_validator(mode="after")
    def _ops(self) -> BatchSpec:
        if len(set(self.ops)) > 1 and self.op_field is None and self.ops != ["create", "upsert"]:
            raise ValueError("a batch of several operations needs 'op_field'")
        return self


def default_write(op: str, stream_path: str, spec: WriteSpec) -> tuple[str, str]:
    """The method and path of ``op`` with the REST defaults filled in."""
    item = stream_path.rstrip("/") + "/{id}"
    methods = {"create": "POST", "update": "PATCH", "delete": "DELETE", "upsert": "PUT"}
    paths = {"create": stream_path, "update": item, "delete": item, "upsert": stream_path}
    return spec.method or methods[op], spec.path or paths[op]
