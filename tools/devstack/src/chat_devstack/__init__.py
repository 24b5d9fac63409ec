"""Local stack and test servers: NATS, Redis and Postgres from PyPI wheels, plus the services.

Modules:

- :mod:`chat_devstack.servers` - ``NatsServer``, ``RedisServer``, ``PostgresServer``
- :mod:`chat_devstack.stack` - ``StackConfig`` and ``Stack`` (servers + gateway/session/history)
- :mod:`chat_devstack.process` - ``ManagedProcess``, one child process we own
- :mod:`chat_devstack.services` - ``ServiceProcess`` and the services' environment
- :mod:`chat_devstack.ports` - ``free_port`` and friends
- :mod:`chat_devstack.probes` - raw-socket readiness probes
- :mod:`chat_devstack.errors` - the exception tree
- :mod:`chat_devstack.cli` - the ``chat-stack`` command
"""

__all__: list[str] = []
