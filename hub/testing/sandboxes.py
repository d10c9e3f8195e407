"""Failing a test whose traffic broke a provider's API description.

Every :class:`~hub.sandbox.SandboxApp` made with ``spec=`` records what broke the provider's
description (requests it refused, answers and webhooks that do not follow it). These helpers
turn those records into test failures:

- :func:`violation_counts` before a test and :func:`recorded_since` after it: what any
  sandbox of this process (made by the test or shared by a module) recorded meanwhile
  (``tests/conftest.py`` fails every test on it, in an autouse fixture);
- :func:`remote_violations`: the same for a sandbox served by another process, read from
  its ``GET /_sandbox/violations``.

A test that sends invalid requests on purpose takes them first: ``app.violations.take()``
(or ``DELETE /_sandbox/violations``).
"""

from __future__ import annotations

import ssl

import httpx

from hub.sandbox import opened_sandboxes

__all__ = [
    "describe",
    "recorded_since",
    "remote_violations",
    "violation_counts",
]


def describe(name: str, violations: list[str]) -> str:
    shown = "\n".join(f"  - {v}" for v in violations[:20])
    more = f"\n  ... and {len(violations) - 20} more" if len(violations) > 20 else ""
    return (
        f"the {name} sandbox saw traffic its provider's API description does not allow "
        f"({len(violations)}):\n{shown}{more}"
    )


def recorded_since(start: dict[int, int]) -> list[str]:
    """What the live sandboxes recorded after ``start`` (:func:`violation_counts`), one
    message per sandbox that recorded anything."""
    problems = []
    for app in opened_sandboxes():
        found = app.violations.items(since=start.get(app.serial, 0))
        if found:
            problems.append(describe(app.name, [str(v) for v in found]))
    return problems


def violation_counts() -> dict[int, int]:
    """How many violations each live sandbox has recorded so far, by its serial number."""
    return {app.serial: app.violations.recorded for app in opened_sandboxes()}


def remote_violations(
    base_url: str, timeout: float = 30, verify: bool | ssl.SSLContext = True
) -> list[str]:
    """The violations a sandbox served at ``base_url`` (another process) has recorded;
    ``verify``: an SSL context trusting a sandbox served over HTTPS (or ``False``)."""
    response = httpx.get(
        f"{base_url.rstrip('/')}/_sandbox/violations", timeout=timeout, verify=verify
    )
    response.raise_for_status()
    return [str(v["text"]) for v in response.json()["violations"]]
