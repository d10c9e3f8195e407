"""Structured logging: JSON lines under the daemon, readable lines in a terminal, no secrets.

``configure_logging()`` installs one handler on the root logger (uvicorn's loggers are routed
through it too, so run uvicorn with ``log_config=None``). Every record passes a redaction
filter before it is written:

* values of keys that name credentials (``authorization``, ``token``, ``secret``,
  ``password``, ``api_key``, ...) are masked, in ``extra={...}`` fields, in dicts and lists
  inside them, and in ``key=value`` / ``"key": "value"`` text inside messages (there the key
  must end with the credential word, as ``x-api-key`` or ``webhook_secret`` do: not
  ``SecretKeyError`` or ``token_url``);
* any value registered with ``register_secret(value)`` is masked wherever it appears,
  including in exception tracebacks. The source lines a traceback quotes are code, not
  data: only registered values are masked there, so the traceback stays readable.

Extra fields given as ``log.info("pulled", extra={"connection": "crm", "records": 12})``
become JSON keys (or ``key=value`` pairs in a terminal).
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

MASK = "***"
SECRET_KEYS = (
    "authorization",
    "token",
    "secret",
    "password",
    "passwd",
    "api_key",
    "apikey",
    "client_secret",
    "refresh_token",
    "access_token",
    "cookie",
    "signature",
    "private_key",
)
_KEY_PART = "|".join(sorted((re.escape(k) for k in SECRET_KEYS), key=len, reverse=True))
# In text a key names a credential when it ends with a credential word, whole or after a
# prefix ("x-api-key", "webhook_secret"), with "-" and "_" alike.
_TEXT_KEY = "|".join(
    sorted((re.escape(k).replace("_", "[_-]") for k in SECRET_KEYS), key=len, reverse=True)
)
# key=value, key: value, "key": "value"
_TEXT_PAIR = re.compile(
    rf"""(?P<key>(?<![\w-])["']?(?:[\w-]*[_-])?(?:{_TEXT_KEY})["']?\s*[:=]\s*)"""
    rf"""(?P<quote>["']?)(?P<scheme>(?:Bearer|Basic|Token)\s+)?(?P<value>[^\s"',;&}}\]]+)""",
    re.IGNORECASE,
)
_SECRET_KEY = re.compile(rf"(?:{_KEY_PART})", re.IGNORECASE)
# A traceback's quoted source lines (and the ^^^ under them) are indented by four spaces.
_SOURCE_LINE = re.compile(r"^    ")
# Not secret though their names say "token": counts and flags that help reading logs.
_ALLOWED_KEYS = frozenset({"token_expires_at", "tokens", "token_status"})
# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colour codes
}

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on (values under 4 characters are ignored)."""
    global _secret_pattern
    if not value or len(value) < 4:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def is_secret_key(key: str) -> bool:
    return key.lower() not in _ALLOWED_KEYS and bool(_SECRET_KEY.search(key))


def _registered(text: str) -> str:
    pattern = _secret_pattern
    return pattern.sub(MASK, text) if pattern is not None else text


def redact_traceback(text: str) -> str:
    """``redact_text`` for a traceback: its quoted source lines get registered values
    masked only (``secret = await ...`` is code, not a secret)."""
    return "\n".join(
        _registered(line) if _SOURCE_LINE.match(line) else redact_text(line)
        for line in text.split("\n")
    )


def redact_text(text: str) -> str:
    """Mask registered secret values and the values of credential-named keys in ``text``."""
    text = _registered(text)

    def pair(m: re.Match[str]) -> str:
        key = m.group("key")
        if key.strip("\"' :=").lower() in _ALLOWED_KEYS:
            return m.group(0)
        return f"{key}{m.group('quote')}{m.group('scheme') or ''}{MASK}"

    return _TEXT_PAIR.sub(pair, text)


def redact(value: Any, key: str | None = None) -> Any:
    """A copy of ``value`` with secrets masked; dict keys that name credentials mask their value."""
    if key is not None and is_secret_key(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [redact(v) for v in value]
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    return value


class RedactingFilter(logging.Filter):
    """Renders the message, then masks secrets in it, in extras and in the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_traceback(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_traceback(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                record.__dict__[key] = redact(value, key)
        return True


def extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extras, and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exc"] = record.exc_text
        return jsonlib.dumps(data, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``12:00:01 INFO  hub.sync  pulled  connection=crm records=12`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{when} {record.levelname:<7} {record.name}  {record.getMessage()}"
        pairs = " ".join(f"{k}={v}" for k, v in extras(record).items())
        if pairs:
            line += f"  {pairs}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


_HANDLER_MARK = "_crmhub_handler"


def configure_logging(
    json: bool | None = None, level: int | str = "INFO", stream: IO[str] | None = None
) -> logging.Handler:
    """Log to ``stream`` (stderr) as JSON lines, or readable lines when ``json`` is false.

    ``json=None`` picks readable output when the stream is a terminal and JSON otherwise.
    Calling it again replaces the previous crmhub handler. Returns the handler.
    """
    out = stream if stream is not None else sys.stderr
    if json is None:
        json = not (hasattr(out, "isatty") and out.isatty())
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if json else ConsoleFormatter())
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler
