"""Picking free TCP ports on the loopback interface."""

from __future__ import annotations

import socket

__all__ = ["free_port", "free_port_pair", "next_free_ports", "port_is_free"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that the kernel reports free on ``host`` right now.

    Another process may still grab it before we bind it; servers started on a port picked
    here retry with a new port when that happens (see ``chat_devstack.server_base``).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_pair(offset: int, host: str = "127.0.0.1") -> int:
    """A free port ``p`` such that ``p + offset`` is a valid port and free too (a Redis
    Cluster node listens for its peers on its port + 10000)."""
    while True:
        port = free_port(host)
        if port + offset <= 65535 and port_is_free(port + offset, host):
            return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound on ``host`` (with ``SO_REUSEADDR``, like servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def next_free_ports(start: int, count: int, host: str = "127.0.0.1") -> list[int]:
    """The first ``count`` free ports at or above ``start``; ``start=0`` picks random ones."""
    if count <= 0:
        return []
    if start == 0:
        ports: list[int] = []
        while len(ports) < count:
            port = free_port(host)
            if port not in ports:
                ports.append(port)
        return ports
    found: list[int] = []
    for port in range(start, 65536):
        if port_is_free(port, host):
            found.append(port)
            if len(found) == count:
                return found
    raise OSError(f"fewer than {count} free ports at or above {start} on {host}")
