"""The store: one SQLAlchemy async engine over SQLite (default) or PostgreSQL."""

from hub.store.db import Store, utcnow
from hub.store.lease import Lease

__all__ = ["Lease", "Store", "utcnow"]
