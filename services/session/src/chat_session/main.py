"""Composition root of the session service: settings, Redis, endpoints, one lifespan."""

from __future__ import annotations

from opentelemetry.instrumentation.redis import RedisInstrumentor

from chat_common.lifecycle import Phase
from chat_common.natsio import traced_publish
from chat_common.runner import run_main
from chat_common.runtime import ServiceRuntime
from chat_common.subjects import SESSION_SERVICE, session_endpoint
from chat_common.tracing import tracing_enabled
from chat_session import redisclient
from chat_session.handlers import SessionHandlers
from chat_session.redisstore import RedisSessionStore
from chat_session.repair import PresenceRepair
from chat_session.settings import SessionSettings

__all__ = ["main", "run"]

VERSION = "0.1.0"


async def main(settings: SessionSettings | None = None) -> int:
    settings = settings or SessionSettings()
    if tracing_enabled():
        RedisInstrumentor().instrument()
    runtime = ServiceRuntime(settings, name=SESSION_SERVICE)
    async with runtime as rt:
        redis = redisclient.connect(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout_s=settings.redis_timeout_s,
        )
        rt.lifecycle.on_shutdown(Phase.CLOSE_POOLS, "redis", redis.aclose)
        store = RedisSessionStore(redis, prefix=settings.key_prefix)
        handlers = SessionHandlers(
            store,
            traced_publish(rt.nc),
            resume_window_s=settings.resume_window_s,
            heartbeat_ttl_s=settings.heartbeat_ttl_s,
            user_rate_per_s=settings.user_rate_per_s,
            user_rate_burst=settings.user_rate_burst,
            max_sessions_per_user=settings.max_sessions_per_user,
            presence_list_max=settings.presence_list_max,
            may_expire=lambda: rt.nats_stable_for(settings.heartbeat_ttl_s),
        )
        rt.add_check("redis", store.ping)
        repair = PresenceRepair(store, handlers.announce, page=settings.presence_list_max)
        rt.lifecycle.supervisor.spawn(
            "presence-repair", lambda: repair.run(interval_s=settings.presence_repair_s)
        )
        rt.lifecycle.supervisor.spawn(
            "reaper",
            lambda: handlers.reap_forever(interval_s=settings.reap_interval_s),
        )
        await rt.serve(
            version=VERSION,
            endpoints={
                "join": handlers.join,
                "leave": handlers.leave,
                "disconnect": handlers.disconnect,
                "detach": handlers.detach,
                "resume": handlers.resume,
                "heartbeat": handlers.heartbeat,
                "restore": handlers.restore,
                "take": handlers.take,
                "rooms": handlers.rooms,
                "presence": handlers.presence,
                "members": handlers.members,
                "inspect": handlers.inspect,
            },
            subject=session_endpoint,
        )
        rt.mark_ready()
        await rt.lifecycle.wait_stopping()
    return runtime.exit_code


def run() -> None:
    """Console entry point ``chat-session``."""
    run_main(main)
