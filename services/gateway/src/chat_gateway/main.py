"""Composition root of the gateway: settings, NATS backend, rooms, handlers, listener."""

from __future__ import annotations

from chat_common.lifecycle import Phase
from chat_common.retry import RetryPolicy
from chat_common.runner import run_main
from chat_common.runtime import ServiceRuntime
from chat_common.schemas import FetchRequest, FetchResponse
from chat_common.subjects import GATEWAY_SERVICE, gateway_control, gateway_endpoint
from chat_gateway.backend import NatsBackend
from chat_gateway.events import EventHandlers
from chat_gateway.metrics import ROOMS
from chat_gateway.rooms import RoomHub
from chat_gateway.server import GatewayServer
from chat_gateway.sessions import SessionKeeper
from chat_gateway.settings import GatewaySettings

__all__ = ["main", "run"]

GAP_FILL_PAGE = 200
VERSION = "0.1.0"


async def main(settings: GatewaySettings | None = None) -> int:
    settings = settings or GatewaySettings()
    runtime = ServiceRuntime(settings, name=GATEWAY_SERVICE)
    async with runtime as rt:
        backend = NatsBackend(
            rt.nc,
            timeout_s=settings.request_timeout_s,
            policy=RetryPolicy(
                attempts=settings.send_attempts, deadline_s=settings.send_deadline_s
            ),
        )

        async def fill_gap(room_id: str, after_seq: int, before_seq: int) -> FetchResponse:
            req = FetchRequest(
                room_id=room_id, after_seq=after_seq, before_seq=before_seq, limit=GAP_FILL_PAGE
            )
            return await backend.fetch(req)

        hub = RoomHub(rt.nc, fill_gap=fill_gap, gap_fill_delay_s=settings.gap_fill_delay_ms / 1000)
        ROOMS.set_function(lambda: len(hub))
        server = GatewayServer(settings, EventHandlers(settings, backend, hub))
        keeper = SessionKeeper(
            backend, gateway_id=settings.instance_id, interval_s=settings.session_heartbeat_s
        )
        await rt.nc.subscribe(gateway_control(settings.instance_id), cb=server.on_control)
        await server.start()
        # A micro service too: $SRV discovery lists every gateway, and readiness does a round
        # trip through this instance's own subscription.
        await rt.serve(
            version=VERSION,
            endpoints={"status": (gateway_endpoint(settings.instance_id, "status"), server.status)},
        )
        rt.lifecycle.on_shutdown(Phase.STOP_INTAKE, "client listener", server.stop_accepting)
        rt.lifecycle.on_shutdown(Phase.CLOSE_CLIENTS, "client connections", server.close_clients)
        rt.lifecycle.supervisor.spawn("engineio-heartbeat", server.heartbeat)
        rt.lifecycle.supervisor.spawn(
            "session-heartbeat", lambda: keeper.run(lambda: server.clients)
        )
        rt.lifecycle.mark_ready()
        await rt.lifecycle.wait_stopping()
    return runtime.exit_code


def run() -> None:
    """Console entry point ``chat-gateway``."""
    run_main(main)
