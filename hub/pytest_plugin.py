"""crmhub's pytest plugin: the contract suite's checks report their values.

pytest explains a failing ``assert`` (the values compared, what differs) only in modules
it rewrites, and by itself it rewrites test modules alone. The connector contract's checks
live in :mod:`hub.testing`, imported by a plugin's tests from an installed crmhub, so this
module, loaded by pytest through crmhub's ``pytest11`` entry point before any test module
is collected, marks that package for rewriting. It must not import :mod:`hub.testing`:
a module already imported cannot be rewritten.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("hub.testing")
