"""Which errors of a Redis call mean "unreachable": redis-py's own, the socket's, and the
transport-teardown errors redis-py lets through on a reset connection (redis/redis-py#4287);
never an error raised by our own code."""

from __future__ import annotations

from typing import Any

import pytest

from chat_session.redisstore import _raised_by_transport


def _raise_from(path: str, error: type[Exception] = AttributeError) -> BaseException:
    namespace: dict[str, Any] = {"error": error}
    exec(compile("def write(w):\n    raise error('transport closed')\n", path, "exec"), namespace)
    with pytest.raises(error) as caught:
        namespace["write"](None)
    return caught.value


def test_a_teardown_error_inside_the_driver_means_unreachable() -> None:
    assert _raised_by_transport(_raise_from("/venv/site-packages/redis/asyncio/connection.py"))
    assert _raised_by_transport(_raise_from("/usr/lib/python3.11/asyncio/selector_events.py"))


def test_uvloops_closed_transport_error_means_unreachable() -> None:
    """uvloop raises RuntimeError from its Cython frames (seen in the Redis Cluster
    partition test: a join answered INTERNAL)."""
    assert _raised_by_transport(_raise_from("uvloop/handles/handle.pyx", RuntimeError))
    assert not _raised_by_transport(_raise_from("/app/chat_session/handlers.py", RuntimeError))


def test_the_same_error_in_our_code_is_a_bug_not_an_outage() -> None:
    assert not _raised_by_transport(_raise_from("/app/chat_session/redisstore.py"))
