"""Pure parts of the dev stack: wire encoders and parsers, ports, service env, CLI config."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from chat_devstack.cli import build_parser, config_from_args
from chat_devstack.ports import free_port, next_free_ports, port_is_free
from chat_devstack.probes import (
    encode_resp_command,
    parse_http_status,
    parse_redis_info,
    postgres_startup_message,
)
from chat_devstack.services import service_env


def test_resp_command_is_an_array_of_bulk_strings() -> None:
    """Commands are encoded as RESP arrays, byte arguments kept as they are."""
    assert encode_resp_command("SET", b"k", "v\u00e9") == (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\xc3\xa9\r\n"
    )


def test_postgres_startup_message_layout() -> None:
    """The startup message is length-prefixed, protocol 3.0, NUL-terminated pairs."""
    msg = postgres_startup_message("postgres", "chat")
    (length, version) = struct.unpack("!II", msg[:8])
    assert length == len(msg)
    assert version == 196608
    assert msg[8:] == b"user\x00postgres\x00database\x00chat\x00\x00"


@pytest.mark.parametrize(
    ("line", "code"),
    [(b"HTTP/1.1 200 OK\r\n", 200), (b"HTTP/1.0 503 Service Unavailable\r\n", 503)],
)
def test_parse_http_status(line: bytes, code: int) -> None:
    """The status code is read from an HTTP/1.x status line."""
    assert parse_http_status(line) == code


def test_parse_http_status_rejects_garbage() -> None:
    """Anything but an HTTP status line is a ValueError."""
    with pytest.raises(ValueError, match="not an HTTP status line"):
        parse_http_status(b"INFO {}\r\n")


def test_parse_redis_info_skips_headers() -> None:
    """INFO replies become a dict; section headers and blank lines are skipped."""
    text = b"# Server\r\nredis_version:6.2.5\r\nprocess_id:42\r\n\r\n# Clients\r\nx:a:b\r\n"
    assert parse_redis_info(text) == {"redis_version": "6.2.5", "process_id": "42", "x": "a:b"}


def test_free_ports_are_bindable_and_distinct() -> None:
    """free_port and next_free_ports return ports that can be bound right now."""
    ports = next_free_ports(0, 3)
    assert len(set(ports)) == 3
    assert all(port_is_free(p) for p in [*ports, free_port()])
    assert next_free_ports(ports[0], 0) == []


def test_next_free_ports_skips_a_busy_port() -> None:
    """Scanning upwards from a busy port skips it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        found = next_free_ports(port, 1)
    assert found[0] > port


def test_service_env_per_kind() -> None:
    """Each kind gets its prefixed variables; extra_env wins over ours."""
    gateway = service_env("gateway", instance_id="gateway-1", http_port=9001,
                          nats_url="nats://n", port=8080, extra_env={"GATEWAY_PORT": "1"})  # fmt: skip
    session = service_env("session", instance_id="session-2", http_port=9002,
                          nats_url="nats://n", redis_url="redis://r")  # fmt: skip
    history = service_env("history", instance_id="history-1", http_port=9003,
                          nats_url="nats://n", postgres_dsn="postgresql://p")  # fmt: skip
    assert gateway == {
        "PYTHONUNBUFFERED": "1",
        "GATEWAY_NATS_URL": "nats://n",
        "GATEWAY_HTTP_PORT": "9001",
        "GATEWAY_INSTANCE_ID": "gateway-1",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "1",
    }
    assert session["SESSION_REDIS_URL"] == "redis://r"
    assert session["SESSION_INSTANCE_ID"] == "session-2"
    assert history["HISTORY_POSTGRES_DSN"] == "postgresql://p"


def test_service_env_requires_the_kinds_dependency() -> None:
    """A session without Redis (or a history without Postgres) is refused."""
    with pytest.raises(ValueError, match="redis_url"):
        service_env("session", instance_id="s", http_port=1, nats_url="nats://n")


def test_cli_run_config_uses_external_urls_from_env() -> None:
    """`chat-stack run` flags and NATS_URL/REDIS_URL/DATABASE_URL make the config."""
    args = build_parser().parse_args(
        ["run", "--data-dir", "/d", "--gateways", "2", "--history", "3", "--port", "9000"]
    )
    config = config_from_args(args, {"NATS_URL": "nats://x:1", "DATABASE_URL": ""})
    assert (config.data_dir, config.gateways, config.sessions, config.histories) == (
        Path("/d"), 2, 1, 3,
    )  # fmt: skip
    assert (config.gateway_port, config.nats_url, config.redis_url, config.postgres_dsn) == (
        9000, "nats://x:1", None, None,
    )  # fmt: skip


def test_cli_servers_config_has_no_services() -> None:
    """`chat-stack servers` starts no service processes."""
    config = config_from_args(build_parser().parse_args(["servers"]), {})
    assert (config.gateways, config.sessions, config.histories) == (0, 0, 0)
    assert config.data_dir == Path(".data")


def test_cli_ha_runs_two_of_each_service_behind_a_balancer() -> None:
    """`chat-stack run --ha`: the clustered servers and two instances of each service, unless
    counts are given; `servers --ha` starts the clustered servers alone."""
    config = config_from_args(build_parser().parse_args(["run", "--ha"]), {})
    assert (config.ha, config.gateways, config.sessions, config.histories) == (True, 2, 2, 2)
    assert config.balancer
    config = config_from_args(build_parser().parse_args(["run", "--ha", "--history", "3"]), {})
    assert (config.gateways, config.histories) == (2, 3)
    config = config_from_args(build_parser().parse_args(["servers", "--ha"]), {})
    assert (config.ha, config.gateways, config.sessions) == (True, 0, 0)


def test_a_cluster_node_port_leaves_room_for_its_bus_port() -> None:
    """A Redis Cluster node needs its port + 10000 free and valid, whatever port the kernel
    offers first."""
    from chat_devstack.ports import free_port_pair

    for _ in range(50):
        port = free_port_pair(10000)
        assert port + 10000 <= 65535 and port_is_free(port + 10000)
