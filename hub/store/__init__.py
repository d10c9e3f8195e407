"""The store: one SQLAlchemy async engine over SQLite (default) or PostgreSQL."""

from hub.store.db import Store, as_utc, utcnow
from hub.store.lease import Lease

__all__ = ["Lease", "Store", "as_utc", "utcnow"]
