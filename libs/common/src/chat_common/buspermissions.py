"""Who may say what on the bus: every NATS identity and its permissions, in one table.

Each part connects to NATS as its own identity (an NKey user) and may publish and subscribe
only on its own subjects. This table is the one source of those permissions: the devstack's
generated ``nats-server`` config (``chat_devstack.nats_server``), ``deploy/nats/nats.conf``,
``deploy/nats/chart-values.yaml`` and the table in ``docs/security.md`` are all rendered from
it (``scripts/bus_permissions.py``; a unit test checks the committed ones).

An identity's lists, and what NATS is told (:meth:`Identity.permissions`):

* ``publishes``: events it emits, fire and forget → publish allow;
* ``requests``: endpoints it calls → publish allow, plus subscribe on its own inbox prefix
  (:func:`inbox_prefix`, so no identity can read another's replies);
* ``subscribes``: events it listens to → subscribe allow;
* ``serves``: endpoints it answers (``nats.micro``, with ``$SRV`` discovery) → subscribe
  allow, and ``allow_responses`` (it may publish a reply to a request it received, nowhere
  else).

Everything not listed is refused by the server. The only publisher of a room's messages is
history, of a room's presence the session service, of a user's stream
(``chat.user.<token>.events``) history, of who is typing in a room
(``chat.room.<room>.typing``) the gateways (the typist's gateway publishes it itself); the
gateway may request ``chat.history.append_batch`` and the chat state endpoints (membership,
marks, inbox) and publishes nothing else; the operator (``chatctl``) reads, and drains.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chat_common.subjects import (
    GATEWAY_SERVICE,
    HISTORY_SERVICE,
    SESSION_SERVICE,
    USER_EVENTS_ANY,
    any_gateway,
    history_endpoint,
    room_events,
    room_presence,
    room_subjects,
    room_typing,
    session_endpoint,
)

__all__ = [
    "IDENTITIES",
    "Identity",
    "authorization_conf",
    "identity",
    "inbox_prefix",
    "is_public_user_key",
    "nkey_variable",
    "users",
]

_PUBLIC_USER_KEY = re.compile(r"U[A-Z2-7]{55}\Z")


def inbox_prefix(name: str) -> str:
    """Where replies to ``name``'s requests go (``_INBOX.gateway``): its own inbox space."""
    return f"_INBOX.{name}"


def nkey_variable(name: str) -> str:
    """The variable deploy configs take ``name``'s public key from (``CHAT_NKEY_GATEWAY``)."""
    return f"CHAT_NKEY_{name.upper()}"


def is_public_user_key(key: str) -> bool:
    """Whether ``key`` looks like an NKey user public key (``U`` + 55 base32 characters)."""
    return bool(_PUBLIC_USER_KEY.match(key))


def _discovery(service: str) -> tuple[str, ...]:
    """What ``nats.micro`` subscribes to for ``$SRV.PING|INFO|STATS`` of ``service``."""
    return ("$SRV.*", f"$SRV.*.{service}", f"$SRV.*.{service}.*")


def _self_probe(service: str) -> str:
    """The readiness check's round trip through the instance's own ``$SRV.PING``."""
    return f"$SRV.PING.{service}.*"


@dataclass(frozen=True, kw_only=True)
class Identity:
    """One NATS user: who uses it and what it may do (see the module docstring)."""

    name: str
    used_by: str
    publishes: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()
    subscribes: tuple[str, ...] = ()
    serves: tuple[str, ...] = ()

    @property
    def publish_allow(self) -> list[str]:
        """Subjects NATS lets this identity publish to (replies aside)."""
        return [*self.publishes, *self.requests]

    @property
    def subscribe_allow(self) -> list[str]:
        """Subjects NATS lets this identity subscribe to."""
        inbox = [f"{inbox_prefix(self.name)}.>"] if self.requests else []
        return [*self.subscribes, *self.serves, *inbox]

    @property
    def allow_responses(self) -> bool:
        """Whether it may reply to requests it received (it serves endpoints)."""
        return bool(self.serves)

    def permissions(self) -> dict[str, Any]:
        """The ``permissions`` map of a nats-server user."""
        perms: dict[str, Any] = {
            "publish": {"allow": self.publish_allow},
            "subscribe": {"allow": self.subscribe_allow},
        }
        if self.allow_responses:
            perms["allow_responses"] = True
        return perms


_GATEWAY_SESSION_ENDPOINTS = (
    "join", "leave", "members", "disconnect", "detach", "resume", "heartbeat", "restore",
)  # fmt: skip
_GATEWAY_STATE_ENDPOINTS = (
    "member_join", "member_leave", "mark_read", "inbox", "user_rooms", "user_events",
)  # fmt: skip
"""History's durable chat state endpoints the gateway calls (:mod:`chat_common.chatstate`)."""

GATEWAY = Identity(
    name="gateway",
    used_by="gateway (services/gateway)",
    # Typing is the gateways' own: the typist's gateway publishes it to the others.
    publishes=(room_typing("*"),),
    requests=(
        *(session_endpoint(e) for e in _GATEWAY_SESSION_ENDPOINTS),
        session_endpoint("take"),
        history_endpoint("append_batch"),
        history_endpoint("fetch"),
        *(history_endpoint(e) for e in _GATEWAY_STATE_ENDPOINTS),
        _self_probe(GATEWAY_SERVICE),
        # A long-polling request for a session another gateway holds is relayed to it.
        any_gateway("poll"),
    ),
    # One subscription per room takes its three subjects (chat.room.<room>.*); the gateway
    # accepts only new_message on .events, only presence on .presence and only typing on
    # .typing. One per user it holds connections of takes that user's stream.
    subscribes=(room_subjects("*"), any_gateway("control"), USER_EVENTS_ANY),
    serves=(
        any_gateway("status"),
        any_gateway("drain"),
        any_gateway("poll"),
        *_discovery(GATEWAY_SERVICE),
    ),
)
SESSION = Identity(
    name="session",
    used_by="session service (services/session)",
    publishes=(room_presence("*"), any_gateway("control")),
    requests=(_self_probe(SESSION_SERVICE),),
    serves=(session_endpoint("*"), *_discovery(SESSION_SERVICE)),
)
HISTORY = Identity(
    name="history",
    used_by="history service (services/history)",
    publishes=(room_events("*"), USER_EVENTS_ANY),
    requests=(_self_probe(HISTORY_SERVICE),),
    serves=(history_endpoint("*"), *_discovery(HISTORY_SERVICE)),
)
OPERATOR = Identity(
    name="operator",
    used_by="chatctl (tools/chatctl), operators",
    requests=(
        "$SRV.>",
        session_endpoint("rooms"),
        session_endpoint("presence"),
        session_endpoint("inspect"),
        history_endpoint("fetch"),
        history_endpoint("inbox"),
        history_endpoint("user_rooms"),
        history_endpoint("room_members"),
        any_gateway("status"),
        any_gateway("drain"),
    ),
)

IDENTITIES: tuple[Identity, ...] = (GATEWAY, SESSION, HISTORY, OPERATOR)
"""Every identity of the system, in the order configs and docs list them."""


def identity(name: str) -> Identity:
    """The identity called ``name``; ``KeyError`` for an unknown one."""
    for candidate in IDENTITIES:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def users(
    keys: Mapping[str, str], identities: tuple[Identity, ...] = IDENTITIES
) -> list[dict[str, Any]]:
    """nats-server ``users`` entries: ``keys`` maps each identity's name to its public key
    (or to a ``$VARIABLE`` the server resolves from its environment)."""
    entries = []
    for ident in identities:
        key = keys[ident.name]
        if not (key.startswith("$") or is_public_user_key(key)):
            raise ValueError(f"{ident.name}: not an NKey user public key")
        entries.append({"nkey": key, "permissions": ident.permissions()})
    return entries


def _value(value: Any, indent: str) -> str:
    """``value`` in nats-server config syntax; ``$NAME`` strings stay variable references."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.startswith("$") and value[1:].isidentifier() else json.dumps(value)
    inner = indent + "  "
    if isinstance(value, list):
        items = ",\n".join(f"{inner}{_value(v, inner)}" for v in value)
        return f"[\n{items}\n{indent}]"
    fields = "\n".join(f"{inner}{k}: {_value(v, inner)}" for k, v in value.items())
    return f"{{\n{fields}\n{indent}}}"


def authorization_conf(
    keys: Mapping[str, str], identities: tuple[Identity, ...] = IDENTITIES
) -> str:
    """The nats-server ``authorization`` block for ``identities`` (see :func:`users`).

    Only these users can connect: a client without credentials, or with a key not listed,
    is refused.
    """
    blocks = []
    for ident, user in zip(identities, users(keys, identities), strict=True):
        blocks.append(f"    # {ident.name}: {ident.used_by}\n    {_value(user, '    ')}")
    return "authorization {\n  users: [\n" + ",\n".join(blocks) + "\n  ]\n}\n"
