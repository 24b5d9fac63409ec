"""The chat state store's contract (``tests/contracts/chat_state_store.py``) on the
in-memory stores: no servers. The same contract runs on Postgres in
``tests/integration/test_chat_state_store.py``."""

from __future__ import annotations

from typing import Any

import pytest

from chat_history.memorystate import InMemoryChatStateStore
from chat_history.memorystore import InMemoryMessageStore
from tests.contracts.chat_state_store import ChatStateStoreContract, Stores


@pytest.fixture
def stores() -> Stores:
    messages = InMemoryMessageStore()

    def state_with(**settings: Any) -> InMemoryChatStateStore:
        return InMemoryChatStateStore(messages, **settings)

    return Stores(messages, state_with(), state_with)


class TestInMemoryChatStateStore(ChatStateStoreContract):
    """The contract on :class:`InMemoryChatStateStore` over an
    :class:`InMemoryMessageStore`."""
