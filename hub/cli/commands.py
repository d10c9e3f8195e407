"""Command modules; importing this module registers every command on ``hub.cli.app``."""

from hub.cli import (  # noqa: F401
    auth_commands,
    core_commands,
    daemon_commands,
    entity_commands,
    forms_commands,
    inbox_commands,
    outbox_commands,
    plugin_commands,
    relation_commands,
    slack_commands,
    status_command,
)
