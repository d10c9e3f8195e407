"""Zendesk Support, declared in ``zendesk.toml`` and run by ``hub.rest``.

The entry point ``zendesk = "connectors.zendesk:zendesk.toml"`` names the declaration;
``hooks`` holds what it cannot say, ``api`` the sandbox's API description.
"""
