"""Composition root of the gateway: settings, the NATS backend, rooms, handlers, the
client port, keepalive and drain, in one lifespan."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.msg import Msg

from chat_common.lifecycle import Phase
from chat_common.retry import RetryPolicy
from chat_common.runner import run_main
from chat_common.runtime import ServiceRuntime
from chat_common.subjects import GATEWAY_SERVICE, gateway_control, gateway_endpoint
from chat_gateway.appends.batcher import AppendBatcher
from chat_gateway.auth import JwtVerifier, build_verifier
from chat_gateway.backend import BusBackend, Request, nats_request
from chat_gateway.busloss import BusLoss, watch_bus
from chat_gateway.changeevents import ChangeEvents
from chat_gateway.connection.catchup import CatchUpLimits
from chat_gateway.connection.loop import Connections
from chat_gateway.connection.priority import Priorities
from chat_gateway.dispatch import EventDispatcher
from chat_gateway.doorway import Doorway
from chat_gateway.drain import Drain
from chat_gateway.events import EventHandlers
from chat_gateway.keepalive import Keepalive
from chat_gateway.metrics import BUS_LOSS_SHEDS, INBOX_ROOMS, LAGGING, ROOMS, USER_STREAMS
from chat_gateway.pollrelay import PollRelay
from chat_gateway.port import ClientPort
from chat_gateway.registry import ClientRegistry
from chat_gateway.resume import Resumer
from chat_gateway.rooms.feed import Subscribe, nats_subscriber
from chat_gateway.rooms.hub import RoomHub
from chat_gateway.rooms.laggards import Laggards
from chat_gateway.rooms.leaving import RoomLeaving
from chat_gateway.rooms.typingfanout import TypingConfig, TypingFanout
from chat_gateway.rooms.typingrate import TypingRate
from chat_gateway.rooms.typingsend import Publish, TypingSender
from chat_gateway.rooms.writer import RoomWriter
from chat_gateway.sessions import SessionKeeper
from chat_gateway.settings import GatewaySettings
from chat_gateway.typingevent import TypingEvents
from chat_gateway.userevents import UserEventHandlers
from chat_gateway.userlimit import UserLimiter
from chat_gateway.users.inbox import Inbox
from chat_gateway.users.marks import ReadMarks
from chat_gateway.users.state import BusChatState
from chat_gateway.users.stream import UserStreams
from chat_gateway.webpage import WebPage

__all__ = ["Gateway", "assemble", "main", "run"]

_log = logging.getLogger("chat.gateway")

VERSION = "0.1.0"


@dataclass(frozen=True, slots=True)
class Gateway:
    """The gateway's parts, wired together; the lifespan around them is :func:`main`'s."""

    port: ClientPort
    connections: Connections
    registry: ClientRegistry
    hub: RoomHub
    appender: AppendBatcher
    keepalive: Keepalive
    drain: Drain
    keeper: SessionKeeper
    streams: UserStreams
    inbox: Inbox
    marks: ReadMarks
    laggards: Laggards

    async def close_users(self) -> None:
        """Stop the catch-up's, user streams', inbox's and read marks' tasks (after the
        clients)."""
        await self.laggards.close()
        await self.marks.close()
        await self.inbox.close()
        await self.streams.close()


def assemble(
    settings: GatewaySettings,
    *,
    request: Request,
    subscribe: Subscribe,
    publish: Publish,
    verifier: JwtVerifier | None,
    relay: PollRelay | None = None,
    on_drain: Callable[[], None] = lambda: None,
) -> Gateway:
    """Wire the gateway on the bus it is given: ``request`` reaches the session and history
    services, ``subscribe`` a room's events, ``publish`` its clients' typing (NATS here; the
    in-process test harness gives its in-memory bus, so that its gateway is this very
    wiring)."""
    policy = RetryPolicy(attempts=settings.send_attempts, deadline_s=settings.send_deadline_s)
    backend = BusBackend(request, policy=policy)
    typing = TypingSender(
        publish,
        gateway_id=settings.instance_id,
        rate=TypingRate(rate=settings.typing_rate_per_s, burst=settings.typing_burst),
    )
    typing_config = TypingConfig(
        ttl_s=settings.typing_ttl_ms / 1000,
        interval_s=settings.typing_interval_ms / 1000,
        max_names=settings.typing_names_max,
        room_frames_per_s=settings.typing_room_frames_per_s,
    )
    laggards = _laggards(settings, backend)
    hub = RoomHub(
        subscribe,
        writer=RoomWriter(Priorities(settings.soft_limit_bytes), laggards),
        fill_gap=backend.fetch_gap,
        gap_fill_delay_s=settings.gap_fill_delay_ms / 1000,
        presence_interval_s=settings.presence_interval_ms / 1000,
        presence_diff_max=settings.presence_diff_max,
        typing=lambda members: TypingFanout(members, typing_config, on_left=typing.left),
    )
    appender = AppendBatcher(backend.append_batch, max_in_flight=settings.append_batches_in_flight)
    resumer = Resumer(backend, hub, gateway_id=settings.instance_id, max_replay=settings.max_replay)
    state = BusChatState(request, policy=policy)
    streams = UserStreams(subscribe, state, gap_delay_s=settings.gap_fill_delay_ms / 1000)
    inbox = Inbox(subscribe, state, streams)
    marks = ReadMarks(state)
    leaving = RoomLeaving(backend, hub)
    doorway = Doorway(
        backend,
        hub,
        resumer,
        verifier=verifier,
        write_cap=settings.slow_consumer_bytes,
        users=streams,
        inbox=inbox,
    )
    handlers = EventHandlers(
        settings,
        backend,
        hub,
        appender=appender,
        resumer=resumer,
        authenticate=doorway.authenticate,
        streams=streams,
        state=state,
        leaving=leaving,
    )
    user_handlers = UserEventHandlers(
        state, streams=streams, inbox=inbox, marks=marks,
        leave_room=leaving.leave, drop_room=leaving.drop,
    )  # fmt: skip
    changes = ChangeEvents(appender, max_text_length=settings.max_text_length)
    limiter = UserLimiter(backend.take, lease=settings.user_lease, ttl_s=settings.user_lease_ttl_s)
    dispatcher = EventDispatcher(
        handlers.table() | user_handlers.table() | changes.table() | TypingEvents(typing).table(),
        doorway,
        appender=appender,
        marks=marks,
        users=limiter,
    )
    registry = ClientRegistry(instance_id=settings.instance_id)
    connections = Connections(settings, dispatcher, registry)
    port = ClientPort(settings, connections, WebPage.load(), relay=relay)
    drain = Drain(
        registry,
        port,
        instance_id=settings.instance_id,
        grace_s=settings.shutdown_grace_s,
        on_drain=on_drain,
    )
    keeper = SessionKeeper(
        backend, gateway_id=settings.instance_id, interval_s=settings.session_heartbeat_s
    )
    keepalive = Keepalive(registry, settings)
    return Gateway(
        port, connections, registry, hub, appender, keepalive, drain, keeper, streams, inbox, marks,
        laggards,
    )  # fmt: skip


def _laggards(settings: GatewaySettings, backend: BusBackend) -> Laggards:
    """Catch-up from history for clients past the soft limit (docs/reliability.md)."""
    priorities = Priorities(settings.soft_limit_bytes)
    limits = CatchUpLimits(
        low=priorities.low,
        target=(priorities.soft + priorities.low) // 2,
        page_max=settings.catchup_page,
        interval_s=settings.catchup_interval_s,
        deadline_s=settings.catchup_deadline_s,
    )
    tick_s = min(0.1, max(0.005, settings.catchup_interval_s / 4))
    return Laggards(backend.fetch, limits=limits, tick_s=tick_s)


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
        # A relayed GET is held at most until the next ping; the margin covers a slow bus.
        relay = PollRelay(
            rt.nc, timeout_s=(settings.ping_interval_ms + settings.ping_timeout_ms) / 1000 + 5
        )
        gw = assemble(
            settings,
            request=nats_request(rt.nc, timeout_s=settings.request_timeout_s),
            subscribe=nats_subscriber(rt.nc),
            publish=rt.nc.publish,
            verifier=verifier,
            relay=relay,
            on_drain=rt.lifecycle.mark_not_ready,
        )
        ROOMS.set_function(lambda: len(gw.hub))
        LAGGING.set_function(lambda: len(gw.laggards))
        USER_STREAMS.set_function(lambda: len(gw.streams))
        INBOX_ROOMS.set_function(gw.inbox.rooms_followed)

        async def on_control(msg: Msg) -> None:
            gw.registry.take_over(msg.data)

        await rt.nc.subscribe(gateway_control(settings.instance_id), cb=on_control)
        await relay.serve(gw.port.answer_relayed)
        await gw.port.start()
        # A micro service too: $SRV discovery lists every gateway, and readiness does a round
        # trip through this instance's own subscription.
        await rt.serve(
            version=VERSION,
            endpoints={"status": gw.registry.status, "drain": gw.drain.drain_endpoint},
            subject=lambda name: gateway_endpoint(settings.instance_id, name),
        )
        on_shutdown = rt.lifecycle.on_shutdown
        on_shutdown(Phase.STOP_INTAKE, "client listener", gw.port.stop_accepting)
        on_shutdown(Phase.CLOSE_CLIENTS, "client connections", gw.drain.close_clients)
        on_shutdown(Phase.CLOSE_CLIENTS, "appends in flight", gw.appender.drain)
        on_shutdown(Phase.CLOSE_CLIENTS, "user streams", gw.close_users)
        on_shutdown(Phase.CLOSE_CLIENTS, "relayed polls", relay.close)
        spawn = rt.lifecycle.supervisor.spawn
        spawn("engineio-heartbeat", gw.keepalive.heartbeat)
        spawn("connection-watch", gw.keepalive.watch)
        spawn("session-heartbeat", lambda: gw.keeper.run(lambda: gw.registry))
        spawn(
            "bus-loss",
            lambda: watch_bus(
                lambda: rt.nc.is_connected,
                BusLoss(shed_after_s=settings.bus_loss_shed_s),
                shed=_shedding(gw),
                reopen=lambda: gw.port.refuse_new(False),
            ),
        )
        rt.mark_ready()
        await rt.lifecycle.wait_stopping()
    return runtime.exit_code


def _shedding(gw: Gateway) -> Callable[[], Awaitable[int]]:
    async def shed() -> int:
        gw.port.refuse_new(True)
        BUS_LOSS_SHEDS.inc()
        return await gw.drain.shed()

    return shed


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
