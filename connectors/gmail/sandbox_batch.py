"""Google's batch endpoint for the sandbox: ``multipart/mixed`` in, ``multipart/mixed`` out.

Each part of the request is an HTTP request (``application/http``) with a ``Content-ID``;
each part of the answer is that request's HTTP answer with ``Content-ID: <response-ID>``, in
the same order. Parts are answered by the sandbox's own routes, one after the other, with
the outer request's credentials, and each is held to the API description like a request
of its own. At most 100 parts (Google's limit).
"""

from __future__ import annotations

import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from urllib.parse import urlsplit

from hub.sandbox.inner import InnerAnswer, InnerRequest

__all__ = ["MAX_PARTS", "BatchError", "answer_batch", "parse_batch"]

MAX_PARTS = 100


class BatchError(ValueError):
    pass


def parse_batch(content_type: str, body: bytes) -> list[InnerRequest]:
    """The parts of a batch request; raises :class:`BatchError` for a malformed one."""
    if not content_type.lower().startswith("multipart/mixed") or "boundary=" not in content_type:
        raise BatchError("a batch request is multipart/mixed with a boundary")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise BatchError("the batch body has no parts")
    parts = []
    for part in message.iter_parts():
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            raise BatchError("a batch part has no HTTP request")
        head, _, inner_body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        lines = head.decode("utf-8", "replace").split("\n")
        try:
            method, target, _ = lines[0].split(" ", 2)
        except ValueError:
            raise BatchError(f"bad request line in a batch part: {lines[0][:80]!r}") from None
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        url = urlsplit(target)
        parts.append(
            InnerRequest(
                content_id=str(part.get("Content-ID", "")).strip(),
                method=method.upper(),
                path=url.path,
                query=url.query,
                headers=headers,
                body=inner_body.rstrip(b"\n") if inner_body else b"",
            )
        )
    if len(parts) > MAX_PARTS:
        raise BatchError(f"a batch request may hold at most {MAX_PARTS} calls")
    return parts


def answer_batch(parts: list[tuple[str, InnerAnswer]]) -> tuple[bytes, str]:
    """The multipart answer (body, content type) to parts answered in order."""
    boundary = f"batch_{uuid.uuid4().hex}"
    chunks = []
    for content_id, answer in parts:
        inner = content_id.strip("<>")
        try:
            reason = HTTPStatus(answer.status).phrase
        except ValueError:
            reason = ""
        head = [f"HTTP/1.1 {answer.status} {reason}".rstrip()]
        for name, value in answer.headers.items():
            if name.lower() in ("content-type", "etag", "retry-after"):
                head.append(f"{name}: {value}")
        chunks.append(
            f"--{boundary}\r\nContent-Type: application/http\r\n"
            f"Content-ID: <response-{inner}>\r\n\r\n".encode()
            + "\r\n".join(head).encode()
            + b"\r\n\r\n"
            + answer.body
            + b"\r\n"
        )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/mixed; boundary={boundary}"
