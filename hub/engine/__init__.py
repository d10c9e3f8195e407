"""The sync engine: one run of one connection (lease, pull and merge page by page, deletes,
push), and the approval of a run held by the delete guard."""

from hub.engine.holds import approve
from hub.engine.many import sync_connections
from hub.engine.run import RunReport, sync_connection

__all__ = ["RunReport", "approve", "sync_connection", "sync_connections"]
