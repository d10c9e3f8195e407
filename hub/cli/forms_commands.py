"""``crmhub forms``: web forms.

crmhub forms snippet FORM [--output FILE]
"""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.app import app, fail, get_config
from hub.errors import CrmhubError
from hub.registry import Registry

forms_app = typer.Typer(help="Web forms: embeddable HTML.", no_args_is_help=True)
app.add_typer(forms_app, name="forms")


@forms_app.command("snippet")
def snippet(
    form: str = typer.Argument(..., help="The web form's connection name."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the HTML to this file instead of printing it."
    ),
) -> None:
    """Print an embeddable, accessible HTML form posting to the hub (with its spam guards)."""
    from connectors.webforms.snippet import render_snippet

    try:
        config = get_config()
        conn = config.connection(form)
        if conn.hub.connector != "webforms":
            raise fail(f"connection {form!r} is a {conn.hub.connector} connection, not a web form")
        settings = Registry.discover().settings_for(config, conn)
        if not settings.browser:
            raise fail(
                f"form {form!r} takes {settings.provider} webhooks; "
                "its form is built in that service"
            )
        html = render_snippet(config, form, settings)
    except CrmhubError as exc:
        raise fail(str(exc)) from None
    if output is not None:
        output.write_text(html, encoding="utf-8")
    else:
        typer.echo(html, nl=False)
