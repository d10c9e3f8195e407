"""The ``gmail`` connector: Gmail messages as activities, Google contacts both ways."""

from connectors.gmail.connector import GmailConnector
from connectors.gmail.settings import GmailSettings

__all__ = ["GmailConnector", "GmailSettings"]
