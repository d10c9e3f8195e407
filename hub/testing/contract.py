"""The standard test suite every connector runs: one subclass, a few hooks.

A connector (built-in or third-party) proves it keeps the :class:`~hub.connector.Connector`
contract by subclassing :class:`ConnectorContract` in its own tests::

    import pytest_asyncio
    from hub.testing.contract import ConnectorContract

    class TestAcmeContract(ConnectorContract):
        @pytest_asyncio.fixture
        async def connector(self, tmp_path):           # 1. a connector on a fresh, empty remote
            connector = AcmeConnector(AcmeSettings(...), ConnectorContext("acme", tmp_path))
            yield connector
            await connector.aclose()

        async def seed(self, connector, records):      # 2. put records in, bypassing push
            ...

        async def remote_records(self, connector):     # 3. read every record back, bypassing pull
            ...

        async def edit_remotely(self, connector, identity, changes):  # 4. optional
            ...

        async def delete_remotely(self, connector, identity):         # 5. optional
            ...

        async def throttle(self, connector, times):                   # 6. optional
            ...

A declared connector needs none of this: ``hub.testing.declarative_contract`` makes the
whole class from the declaration and its generated sandbox.

The suite checks that streams are declared sanely; a full pull returns every seeded record
once; every page has string ids and versions, aware times and a JSON cursor; cursors settle,
also after changes (nothing is pulled twice at an inclusive boundary); remote changes and
remote deletes show up from a saved cursor; ``full_scan`` pages list every record; a short
throttle is retried and a long one ends as ``RateLimited`` with the asked wait; pushes
return exactly one result per change of a mixed batch; one bad item is a result, never an
exception; creates are not repeated by a retry, nor after a crash between the remote's
answer and the hub's commit (a new connector instance sends the same change); updates,
deletes and a delete of an already-deleted record succeed; an outdated version is refused
with ``stale=True`` and ``fetch`` reads the current record; a throttled push says how long
to wait; nothing but crmhub errors leave ``pull`` and ``push``.

Records are exchanged in the remote shape. The defaults suit flat remotes whose keys are
canonical field names (``email``, ``first_name``, ``name``, ``domain``); a connector with
another shape overrides :meth:`~ConnectorContract.sample`, :meth:`~ConnectorContract.identity`,
:meth:`~ConnectorContract.edit` and, if values come back transformed,
:meth:`~ConnectorContract.matches`. ``stream_name`` picks the stream under test (default:
the first one); ``page_size`` (records a page of a full pull) makes the pull tests seed more
than two pages' worth; ``stale_versions = False`` says the remote's writes are unconditional;
``settles = False`` that a stream can only list everything. Every test is marked
``asyncio``, so the suite runs under pytest-asyncio's strict mode: write async fixtures with
``@pytest_asyncio.fixture`` there (``asyncio_mode = "auto"`` accepts ``@pytest.fixture``).
"""

from __future__ import annotations

from hub.testing.contract_base import (
    MISSING_ID,
    ContractBase,
    check_page,
    check_results,
    last_cursor,
    pull_pages,
    records_of,
)
from hub.testing.contract_pull import PullContract
from hub.testing.contract_push import PushContract

__all__ = [
    "MISSING_ID",
    "ConnectorContract",
    "ContractBase",
    "check_page",
    "check_results",
    "last_cursor",
    "pull_pages",
    "records_of",
]


class ConnectorContract(PullContract, PushContract):
    """Base class of a connector's contract tests; see the module docstring for its use."""
