"""Which Postgres host to connect to first, and a DSN per host (pure, no I/O).

``HISTORY_POSTGRES_DSN`` may list several hosts (``postgresql://u@pg1:5432,pg2:5432/chat
?target_session_attrs=read-write``): the primary is whichever accepts writes. asyncpg tries
them in order under one timeout, so a host that has gone silent (a partition, not a
refusal) takes the whole timeout and the next host is never tried: after a failover the
service could not reach the new primary for as long as the old one's address blackholes.
So the pool connects host by host (:mod:`chat_history.database`), each with the full connect
timeout, the host that last worked first: after a failover the first connect pays one
timeout on the old primary, and every later one goes straight to the new.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["HostOrder", "dsn_hosts", "with_host"]


def dsn_hosts(dsn: str) -> list[str]:
    """The ``host:port`` entries of a URL DSN, in order (one for a single-host DSN)."""
    netloc = urlsplit(dsn).netloc
    hosts = netloc.rsplit("@", 1)[-1]
    return [h for h in hosts.split(",") if h]


def with_host(dsn: str, host: str) -> str:
    """``dsn`` with ``host`` (``host:port``) as its only host."""
    parts = urlsplit(dsn)
    user, at, _hosts = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user}{at}{host}"))


class HostOrder:
    """The hosts to try, the one that last accepted a connection first."""

    def __init__(self, hosts: list[str]) -> None:
        if not hosts:
            raise ValueError("no host to connect to")
        self._hosts = list(hosts)
        self._good: str | None = None

    def order(self) -> list[str]:
        if self._good is None:
            return list(self._hosts)
        return [self._good, *(h for h in self._hosts if h != self._good)]

    def worked(self, host: str) -> None:
        self._good = host

    def failed(self, host: str) -> None:
        if self._good == host:
            self._good = None
