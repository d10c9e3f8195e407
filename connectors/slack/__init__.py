"""Connector ``slack``: see :mod:`connectors.slack.connector`."""

from connectors.slack.connector import SlackConnector

__all__ = ["SlackConnector"]
