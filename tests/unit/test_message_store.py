"""The message store's contract (``tests/contracts/message_store.py``) on the in-memory
store: no servers. The same contract runs on Postgres in
``tests/integration/test_message_store.py``."""

from __future__ import annotations

import pytest

from chat_history.memorystore import InMemoryMessageStore
from chat_history.store import MessageStore
from tests.contracts.message_changes import MessageChangesContract
from tests.contracts.message_store import MessageStoreContract


@pytest.fixture
def store() -> MessageStore:
    return InMemoryMessageStore()


class TestInMemoryMessageStore(MessageStoreContract, MessageChangesContract):
    """The contract on :class:`InMemoryMessageStore`."""
