"""The ``xero`` connector: an organisation's contacts, companies and invoices (Accounting API)."""

from connectors.xero.connector import SCOPES, XeroConnector
from connectors.xero.settings import XeroSettings

__all__ = ["SCOPES", "XeroConnector", "XeroSettings"]
