"""``GET /oauth/callback``: where a provider sends the browser back after approval.

The web app includes this router; it reaches the hub through ``request.app.state.hub``.
The page names the connection and what to do next, never a token.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from hub.authspec import CALLBACK_PATH
from hub.errors import CrmhubError

router = APIRouter()

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>crmhub: {title}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>{title}</h1><p>{message}</p></body></html>
"""


def _page(title: str, message: str, status: int) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=escape(title), message=escape(message)),
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@router.get(CALLBACK_PATH, response_class=HTMLResponse, include_in_schema=False)
async def oauth_callback(request: Request) -> HTMLResponse:
    """Complete the pending authorization named by the ``state`` parameter."""
    hub = request.app.state.hub
    if hub.auth is None:
        return _page("Connection not completed", "This hub keeps no credentials.", 400)
    try:
        connection = await hub.auth.complete_authorization(hub, dict(request.query_params))
    except CrmhubError as exc:
        return _page(
            "Connection not completed",
            f"{exc} You can close this window.",
            400,
        )
    return _page(
        "Connected",
        f"crmhub is now connected to {connection!r}. You can close this window.",
        200,
    )
