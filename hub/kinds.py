"""The kinds of golden record the hub keeps.

A module of its own so that what only names a kind (a connector's declaration, a stream)
does not load the record model of :mod:`hub.records`, which re-exports both names.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["ENTITY_TYPES", "EntityType"]

EntityType = Literal["contact", "company", "activity", "ticket", "invoice"]
ENTITY_TYPES: tuple[str, ...] = get_args(EntityType)
