"""The whole connector contract, against the sandbox crmhub makes from the declaration."""

from hub.testing import declarative_contract

TestPeopleContract = declarative_contract("crmhub_connector_people:people.toml")
