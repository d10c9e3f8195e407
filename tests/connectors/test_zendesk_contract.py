"""The connector contract for each Zendesk stream that writes, against the sandbox made from
its declaration (held to Zendesk's API description)."""

from __future__ import annotations

from hub.testing import declarative_contract
from tests.connectors.zendesk_kit import fast_zendesk

ZENDESK = fast_zendesk()

TestZendeskUsers = declarative_contract(ZENDESK, stream="users")
TestZendeskOrganizations = declarative_contract(ZENDESK, stream="organizations")
TestZendeskTickets = declarative_contract(ZENDESK, stream="tickets")
