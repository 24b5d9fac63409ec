"""The session store's contract (``tests/contracts/session_store.py``) on the in-memory
store, with the presence bus in process: no servers. The same contract runs on Redis in
``tests/integration/test_session_store.py``."""

from __future__ import annotations

import pytest

from chat_session.memorystore import InMemorySessionStore
from chat_session.store import SessionStore
from tests.contracts.session_store import MemoryPresenceBus, SessionStoreContract


@pytest.fixture
def store() -> SessionStore:
    return InMemorySessionStore()


@pytest.fixture
def bus() -> MemoryPresenceBus:
    return MemoryPresenceBus()


class TestInMemorySessionStore(SessionStoreContract):
    """The contract on :class:`InMemorySessionStore`."""
