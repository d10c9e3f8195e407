"""``crmhub slack``: Slack notifications.

crmhub slack test RULE [--connection NAME]
"""

from __future__ import annotations

from typing import Any

import typer

from hub.cli.app import app, console, fail, open_hub, run

slack_app = typer.Typer(help="Slack: notification rules.", no_args_is_help=True)
app.add_typer(slack_app, name="slack")


@slack_app.command("test")
def test_rule(
    rule: str = typer.Argument(..., help="The notification rule's name."),
    connection: str | None = typer.Option(
        None, "--connection", "-c", help="The Slack connection (when several have the rule)."
    ),
) -> None:
    """Post a made-up event of RULE's kind to its channel, to see the message."""

    async def body() -> dict[str, Any]:
        from connectors.slack.connector import SlackConnector
        from connectors.slack.notify import render, sample_event

        async with open_hub() as hub:
            found = []
            for name, conn in hub.config.connections.items():
                if conn.hub.connector != "slack" or (connection and name != connection):
                    continue
                connector = hub.connector(name)
                assert isinstance(connector, SlackConnector)
                rules = [r for r in connector.settings.notify if r.name == rule]
                if rules:
                    found.append((name, connector, rules[0]))
                else:
                    await connector.aclose()
            if not found:
                raise fail(f"no Slack connection has a notification rule named {rule!r}")
            if len(found) > 1:
                for _, other, _ in found[1:]:
                    await other.aclose()
                names = ", ".join(n for n, _, _ in found)
                raise fail(f"several Slack connections have rule {rule!r} ({names}): use -c")
            name, connector, chosen = found[0]
            try:
                text, blocks = render(chosen, sample_event(chosen.on))
                answer = await connector.api().post_message(chosen.channel, text, blocks)
            finally:
                await connector.aclose()
            return {"connection": name, "channel": chosen.channel, "ts": answer.get("ts")}

    posted = run(body)
    console.print(
        f"posted a test {rule} message to {posted['channel']} "
        f"(connection {posted['connection']}, ts {posted['ts']})",
        highlight=False,
        markup=False,
    )
