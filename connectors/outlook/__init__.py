"""The ``outlook`` connector: Outlook mail as activities, contacts both ways (Graph, msal)."""

from connectors.outlook.connector import OutlookConnector
from connectors.outlook.settings import OutlookSettings

__all__ = ["OutlookConnector", "OutlookSettings"]
