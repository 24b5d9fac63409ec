"""How the session service reaches Redis, chosen by the URL's scheme.

* ``redis://host:port/db`` (or ``rediss://``, ``unix://``): one server.
* ``redis+sentinel://[user:password@]host:port[,host:port...]/primary-name[/db]``: the
  primary that Sentinel names, found again after a failover.
* ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis Cluster; the nodes
  listed are only where the client learns the slot map, which it follows across failovers.
  The client opens connections to each node as calls need them (``max_connections`` bounds
  the other two kinds).

The user and password, when given, are those of the data nodes (Sentinels are reached
without them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff

__all__ = ["RedisTarget", "connect", "parse_url"]

Kind = Literal["single", "sentinel", "cluster"]


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis URL names."""

    kind: Kind
    url: str
    """The URL itself (what a single server's client is built from)."""
    nodes: tuple[tuple[str, int], ...] = ()
    """Sentinels or cluster seed nodes."""
    primary: str = ""
    """Sentinel's name of the primary."""
    db: int = 0
    username: str | None = None
    password: str | None = None


def _hosts(text: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for part in text.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {part!r}")
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes)


def parse_url(url: str) -> RedisTarget:
    """Which kind of Redis ``url`` names, and where (``ValueError`` if it makes no sense)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("a Redis URL needs a scheme (redis://, redis+sentinel://...)")
    if scheme not in ("redis+sentinel", "redis+cluster"):
        return RedisTarget("single", url)
    location, _, path = rest.partition("/")
    location = location.partition("?")[0]
    userinfo, at, hosts = location.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    parts = [p for p in path.partition("?")[0].split("/") if p]
    if scheme == "redis+cluster":
        if parts:
            raise ValueError("a Redis Cluster has only database 0: no path in the URL")
        return RedisTarget("cluster", url, _hosts(hosts), username=username, password=password)
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("expected redis+sentinel://host:port,.../primary-name[/db]")
    db = int(parts[1]) if len(parts) == 2 else 0
    return RedisTarget(
        "sentinel", url, _hosts(hosts), parts[0], db, username=username, password=password
    )


def connect(url: str, *, max_connections: int, timeout_s: float) -> Redis | RedisCluster:
    """A client (``decode_responses=True``) for the Redis ``url`` names. Nothing connects
    until the first command."""
    target = parse_url(url)
    if target.kind == "cluster":
        # A failover makes the slot's calls fail until the replica is promoted: retry a few
        # times with backoff (each retry refreshes the slot map), then fail as UNAVAILABLE.
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
            username=target.username,
            password=target.password,
            retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=1.0), retries=5),
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
    if target.kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.nodes),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        client: Redis = sentinel.master_for(
            target.primary,
            db=target.db,
            username=target.username,
            password=target.password,
            max_connections=max_connections,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        return client
    # A blocking pool: a burst of requests waits (up to the timeout) for a connection
    # instead of failing at once when every connection is busy.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        health_check_interval=10,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return Redis.from_pool(pool)  # closing the client closes the pool
