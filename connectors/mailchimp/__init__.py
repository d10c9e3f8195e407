"""The ``mailchimp`` connector: members of a Mailchimp audience (Marketing API v3)."""

from connectors.mailchimp.connector import MailchimpConnector, MailchimpSettings
from connectors.mailchimp.members import subscriber_hash

__all__ = ["MailchimpConnector", "MailchimpSettings", "subscriber_hash"]
