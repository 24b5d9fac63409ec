"""Which Postgres host the history pool tries first, and the DSN it gives each (pure)."""

from __future__ import annotations

import pytest

from chat_history.hostorder import HostOrder, dsn_hosts, with_host

DSN = "postgresql://postgres@10.0.0.2:5432,10.0.0.3:5432/chat?target_session_attrs=read-write"


def test_the_hosts_of_a_dsn_and_a_dsn_per_host() -> None:
    """Both hosts, in order; each DSN keeps the user, database and parameters."""
    assert dsn_hosts(DSN) == ["10.0.0.2:5432", "10.0.0.3:5432"]
    assert with_host(DSN, "10.0.0.3:5432") == (
        "postgresql://postgres@10.0.0.3:5432/chat?target_session_attrs=read-write"
    )
    assert dsn_hosts("postgresql://h:1/db") == ["h:1"]
    assert with_host("postgresql://h:1,g:2/db", "g:2") == "postgresql://g:2/db"


def test_the_host_that_last_worked_goes_first() -> None:
    """Configured order until one works; then that one first; a failure of it forgets it."""
    order = HostOrder(["a", "b", "c"])
    assert order.order() == ["a", "b", "c"]
    order.worked("c")
    assert order.order() == ["c", "a", "b"]
    order.failed("a")
    assert order.order() == ["c", "a", "b"]
    order.failed("c")
    assert order.order() == ["a", "b", "c"]


def test_no_hosts_is_refused() -> None:
    with pytest.raises(ValueError):
        HostOrder([])
