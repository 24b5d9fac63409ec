"""Composition root of the gateway: settings, NATS backend, rooms, handlers, listener."""

from __future__ import annotations

import logging

from chat_common.lifecycle import Phase
from chat_common.retry import RetryPolicy
from chat_common.runner import run_main
from chat_common.runtime import ServiceRuntime
from chat_common.subjects import GATEWAY_SERVICE, gateway_control, gateway_endpoint
from chat_gateway.appender import AppendBatcher
from chat_gateway.auth import JwtVerifier, build_verifier
from chat_gateway.backend import NatsBackend
from chat_gateway.events import EventHandlers
from chat_gateway.metrics import ROOMS
from chat_gateway.pollrelay import PollRelay
from chat_gateway.resume import Resumer
from chat_gateway.rooms import RoomHub
from chat_gateway.server import GatewayServer
from chat_gateway.sessions import SessionKeeper
from chat_gateway.settings import GatewaySettings
from chat_gateway.userlimit import UserLimiter
from chat_gateway.webpage import WebPage

__all__ = ["main", "run"]

_log = logging.getLogger("chat.gateway")

VERSION = "0.1.0"


async def main(settings: GatewaySettings | None = None) -> int:
    settings = settings or GatewaySettings()
    verifier = _verifier(settings)
    runtime = ServiceRuntime(settings, name=GATEWAY_SERVICE)
    async with runtime as rt:
        if verifier is None:
            _log.warning(
                "!!! DEVELOPMENT MODE: NO AUTHENTICATION. Any client may claim any email. "
                "Set GATEWAY_AUTH_MODE=jwt before exposing this gateway. !!!"
            )
        backend = NatsBackend(
            rt.nc,
            timeout_s=settings.request_timeout_s,
            policy=RetryPolicy(
                attempts=settings.send_attempts, deadline_s=settings.send_deadline_s
            ),
        )
        hub = RoomHub(
            rt.nc,
            fill_gap=backend.fetch_gap,
            gap_fill_delay_s=settings.gap_fill_delay_ms / 1000,
            presence_interval_s=settings.presence_interval_ms / 1000,
            presence_diff_max=settings.presence_diff_max,
        )
        ROOMS.set_function(lambda: len(hub))
        appender = AppendBatcher(
            backend.append_batch, max_in_flight=settings.append_batches_in_flight
        )
        handlers = EventHandlers(
            settings,
            backend,
            hub,
            verifier=verifier,
            appender=appender,
            users=UserLimiter(backend.take, lease=settings.user_lease),
            resumer=Resumer(
                backend, hub, gateway_id=settings.instance_id, max_replay=settings.max_replay
            ),
        )
        # A relayed GET is held at most until the next ping; the margin covers a slow bus.
        relay = PollRelay(
            rt.nc, timeout_s=(settings.ping_interval_ms + settings.ping_timeout_ms) / 1000 + 5
        )
        server = GatewayServer(
            settings, handlers, WebPage.load(), relay=relay, on_drain=rt.lifecycle.mark_not_ready
        )
        keeper = SessionKeeper(
            backend, gateway_id=settings.instance_id, interval_s=settings.session_heartbeat_s
        )
        await rt.nc.subscribe(gateway_control(settings.instance_id), cb=server.on_control)
        await relay.serve(server.answer_relayed)

        await server.start()
        # A micro service too: $SRV discovery lists every gateway, and readiness does a round
        # trip through this instance's own subscription.
        await rt.serve(
            version=VERSION,
            endpoints={"status": server.status, "drain": server.drain_endpoint},
            subject=lambda name: gateway_endpoint(settings.instance_id, name),
        )
        rt.lifecycle.on_shutdown(Phase.STOP_INTAKE, "client listener", server.stop_accepting)
        rt.lifecycle.on_shutdown(Phase.CLOSE_CLIENTS, "client connections", server.close_clients)
        rt.lifecycle.on_shutdown(Phase.CLOSE_CLIENTS, "appends in flight", appender.drain)
        rt.lifecycle.on_shutdown(Phase.CLOSE_CLIENTS, "relayed polls", relay.close)
        rt.lifecycle.supervisor.spawn("engineio-heartbeat", server.heartbeat)
        rt.lifecycle.supervisor.spawn("connection-watch", server.watch)
        rt.lifecycle.supervisor.spawn(
            "session-heartbeat", lambda: keeper.run(lambda: server.clients)
        )
        rt.mark_ready()
        await rt.lifecycle.wait_stopping()
    return runtime.exit_code


def _verifier(settings: GatewaySettings) -> JwtVerifier | None:
    """The JWT verifier, or ``None`` in development mode; bad settings stop the start."""
    if settings.auth_mode == "dev":
        return None
    try:
        return build_verifier(
            algorithms=settings.jwt_algorithms,
            secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
            public_key_file=settings.jwt_public_key_file,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway_s=settings.jwt_leeway_s,
            room_policy=settings.room_policy,
        )
    except (ValueError, OSError) as exc:
        raise SystemExit(f"gateway: unusable auth settings: {exc}") from None


def run() -> None:
    """Console entry point ``chat-gateway``."""
    run_main(main)
