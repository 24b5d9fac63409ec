"""Which Redis a ``SESSION_REDIS_URL`` names: one server, Sentinel or a cluster."""

from __future__ import annotations

import pytest

from chat_session.redisclient import RedisTarget, parse_url


def test_a_plain_url_is_one_server() -> None:
    assert parse_url("redis://h:6379/2") == RedisTarget("single", "redis://h:6379/2")
    assert parse_url("rediss://h:6380/0").kind == "single"


def test_a_cluster_url_lists_its_seed_nodes_and_credentials() -> None:
    url = "redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001"
    assert parse_url(url) == RedisTarget(
        "cluster", url, (("10.0.0.1", 7000), ("10.0.0.2", 7001)), username="app",
        password="s@cret",
    )  # fmt: skip


def test_a_sentinel_url_names_the_primary_and_the_database() -> None:
    target = parse_url("redis+sentinel://:pw@s1:26379,[::1]:26380/chat-primary/3")
    assert (target.kind, target.nodes, target.primary, target.db) == (
        "sentinel", (("s1", 26379), ("::1", 26380)), "chat-primary", 3,
    )  # fmt: skip
    assert (target.username, target.password) == (None, "pw")


@pytest.mark.parametrize(
    "url",
    [
        "localhost:6379",
        "redis+cluster://h:7000/1",
        "redis+cluster://h",
        "redis+sentinel://s1:26379",
        "redis+sentinel://s1:26379/name/x",
        "redis+sentinel://s1:port/name",
    ],
)
def test_urls_that_make_no_sense_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)
