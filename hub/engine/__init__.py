"""The sync engine: one run of one connection, exactly as ARCHITECTURE's data flow."""

from hub.engine.holds import approve
from hub.engine.many import sync_connections
from hub.engine.run import RunReport, sync_connection

__all__ = ["RunReport", "approve", "sync_connection", "sync_connections"]
