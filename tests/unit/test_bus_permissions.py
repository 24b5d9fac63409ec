"""The bus's permission table says what the security finding requires, and every config and
doc derived from it matches it; credentials are made, checked and kept without leaking."""

from __future__ import annotations

import os
import runpy
import stat
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import msgspec
import pytest
import yaml
from pydantic import SecretStr

from chat_common.buscredentials import new_user_key, public_key, write_seed
from chat_common.buspermissions import IDENTITIES, identity, inbox_prefix, nkey_variable, users
from chat_common.natsio import nats_login
from chat_common.schemas import RoomEvent, RoomMessage, RoomMessages, encode
from chat_common.settings import ServiceSettings
from chat_common.subjects import room_kind, room_subjects
from chat_devstack.binaries import nats_server_path
from chat_devstack.servers import NatsServer
from chat_gateway.rooms.fanout import parse_room_event
from tests.support.bus import subject_matches

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = runpy.run_path(str(ROOT / "scripts" / "bus_permissions.py"))
CREDENTIALS = runpy.run_path(str(ROOT / "scripts" / "nats_credentials.py"))


def _publishers(subject: str) -> set[str]:
    return {i.name for i in IDENTITIES if any(subject_matches(p, subject) for p in i.publish_allow)}


def _subscribers(subject: str) -> set[str]:
    return {
        i.name for i in IDENTITIES if any(subject_matches(p, subject) for p in i.subscribe_allow)
    }


@pytest.mark.parametrize(
    "subject, publishers",
    [
        ("chat.room.lobby.events", {"history"}),  # only history publishes room messages
        ("chat.room.lobby.presence", {"session"}),  # only session publishes presence
        ("chat.room.lobby.typing", {"gateway"}),  # the typist's gateway, to the others
        ("chat.room.lobby.other", set()),
        ("chat.history.append_batch", {"gateway"}),  # the gateway may request appends
        ("chat.history.append", set()),  # served (one at a time), requested by nobody
        ("chat.history.fetch", {"gateway", "operator"}),
        ("chat.history.member_join", {"gateway"}),
        ("chat.history.member_leave", {"gateway"}),
        ("chat.history.mark_read", {"gateway"}),
        ("chat.history.user_events", {"gateway"}),
        ("chat.history.inbox", {"gateway", "operator"}),
        ("chat.history.user_rooms", {"gateway", "operator"}),
        ("chat.history.room_members", {"operator"}),
        ("chat.user.0f3a.events", {"history"}),  # only history publishes a user's stream
        ("chat.user.0f3a.other", set()),
        ("chat.session.join", {"gateway"}),
        ("chat.session.inspect", {"operator"}),
        ("chat.gateway.gw-1.control", {"session"}),
        ("chat.gateway.gw-1.drain", {"operator"}),
        ("$SRV.STATS", {"operator"}),
        ("_INBOX.gateway.abc.1", set()),  # replies only through allow_responses
        ("$JS.API.INFO", set()),
        ("anything.else", set()),
    ],
)
def test_who_may_publish_each_subject(subject: str, publishers: set[str]) -> None:
    """The finding's rules: history alone publishes a room's messages and a user's stream,
    session a room's presence, the gateway requests appends and chat state and publishes
    only who is typing, the operator reads and drains."""
    assert _publishers(subject) == publishers


@pytest.mark.parametrize(
    "subject, subscribers",
    [
        ("chat.room.lobby.events", {"gateway"}),
        ("chat.room.lobby.presence", {"gateway"}),
        ("chat.room.lobby.typing", {"gateway"}),
        ("chat.user.0f3a.events", {"gateway"}),
        ("chat.history.append", {"history"}),
        ("chat.history.mark_read", {"history"}),
        ("chat.session.join", {"session"}),
        ("chat.gateway.gw-1.control", {"gateway"}),
        ("_INBOX.gateway.abc.1", {"gateway"}),  # each reads its own replies only
        ("_INBOX.operator.abc.1", {"operator"}),
        ("_INBOX.abc.1", set()),
        ("$JS.API.INFO", set()),
    ],
)
def test_who_may_subscribe_to_each_subject(subject: str, subscribers: set[str]) -> None:
    """Each endpoint is served by its own service, room and user subjects reach gateways,
    and no identity can read another's replies."""
    assert _subscribers(subject) == subscribers


def test_the_operator_is_read_mostly_and_answers_nothing() -> None:
    """chatctl's identity publishes nothing, serves nothing, and requests only discovery,
    the read-only endpoints, a gateway's status and drain."""
    operator = identity("operator")
    assert operator.publishes == () and operator.serves == () and not operator.allow_responses
    assert set(operator.requests) == {
        "$SRV.>", "chat.session.rooms", "chat.session.presence", "chat.session.inspect",
        "chat.history.fetch", "chat.history.inbox", "chat.history.user_rooms",
        "chat.history.room_members", "chat.gateway.*.status", "chat.gateway.*.drain",
    }  # fmt: skip


def test_only_servers_may_reply_and_requesters_read_their_own_inbox() -> None:
    """allow_responses goes with serving endpoints; an identity that requests subscribes to
    its own inbox prefix, which its connections use."""
    for ident in IDENTITIES:
        assert ident.allow_responses == bool(ident.serves)
        own_inbox = f"{inbox_prefix(ident.name)}.>"
        assert (own_inbox in ident.subscribe_allow) == bool(ident.requests)
        assert not any(p in (">", "_INBOX.>") for p in ident.publish_allow + ident.subscribe_allow)


def test_users_take_only_public_keys() -> None:
    """A server config is never made with a seed (or anything else) in place of a key."""
    keys = {i.name: new_user_key() for i in IDENTITIES}
    good = {name: key.public for name, key in keys.items()}
    assert [u["nkey"] for u in users(good)] == list(good.values())
    with pytest.raises(ValueError, match="not an NKey user public key") as info:
        users({**good, "gateway": keys["gateway"].seed})
    assert keys["gateway"].seed not in str(info.value)


def test_the_committed_docs_and_deploy_configs_match_the_table() -> None:
    """docs/security.md's table, deploy/nats/nats.conf's authorization block and
    deploy/nats/chart-values.yaml are exactly what scripts/bus_permissions.py renders."""
    start, end = SCRIPT["DOCS_MARKERS"]
    docs = (ROOT / "docs" / "security.md").read_text()
    assert f"{start}\n{SCRIPT['docs_table']()}\n{end}" in docs
    start, end = SCRIPT["CONF_MARKERS"]
    conf = (ROOT / "deploy" / "nats" / "nats.conf").read_text()
    assert f"{start}\n{SCRIPT['nats_conf_block']()}{end}" in conf
    chart = (ROOT / "deploy" / "nats" / "chart-values.yaml").read_text()
    assert chart == SCRIPT["chart_values"]()
    merged = yaml.safe_load(chart)["config"]["merge"]["authorization"]["users"]
    assert [u["permissions"] for u in merged] == [i.permissions() for i in IDENTITIES]


def _check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_NKEY_")}
    return subprocess.run(
        [str(nats_server_path()), "-t", "-c", str(path)],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_nats_server_takes_the_deploy_config_only_with_every_key() -> None:
    """nats-server accepts deploy/nats/nats.conf with each identity's public key in its
    environment, and refuses to start without one: the bus never comes up open."""
    conf = ROOT / "deploy" / "nats" / "nats.conf"
    keys = {nkey_variable(i.name): new_user_key().public for i in IDENTITIES}
    complete = _check_config(conf, keys)
    missing = _check_config(conf, {k: v for k, v in keys.items() if "SESSION" not in k})
    assert complete.returncode == 0, complete.stderr
    assert missing.returncode != 0 and "CHAT_NKEY_SESSION" in missing.stderr


def test_the_devstack_server_config_lists_every_identity(tmp_path: Path) -> None:
    """The devstack's NATS has an authorization block with each identity's fresh public
    key, which nats-server accepts; auth=False has none."""
    server = NatsServer(tmp_path, port=4222)
    config = server._config()
    (tmp_path / "nats.conf").write_text(config)
    checked = _check_config(tmp_path / "nats.conf", {})
    assert checked.returncode == 0, checked.stderr
    assert all(server.public_key(i.name) in config for i in IDENTITIES)
    assert set(server.seed_files) == {i.name for i in IDENTITIES}
    assert "authorization" not in NatsServer(tmp_path, port=4222, auth=False)._config()


def _settings(**values: Any) -> ServiceSettings:
    return ServiceSettings(**values)


def test_nats_login_from_a_seed_file_or_the_seed(tmp_path: Path) -> None:
    """A seed file is read once at start, an inline seed taken as it is (both reach the
    client as the seed itself); neither means anonymous; both is refused."""
    key = new_user_key()
    write_seed(tmp_path / "gw.nk", key)
    from_file = nats_login(_settings(nats_nkey_seed_file=tmp_path / "gw.nk"))
    inline = nats_login(_settings(nats_nkey_seed=SecretStr(key.seed)))
    anonymous = nats_login(_settings(nats_nkey_seed_file="", nats_nkey_seed=""))
    assert dict(from_file.options) == dict(inline.options) == {"nkeys_seed_str": key.seed}
    assert from_file.public_key == inline.public_key == key.public
    assert (dict(anonymous.options), anonymous.public_key) == ({}, None)
    assert key.seed not in repr(inline) and key.seed not in repr(key)
    with pytest.raises(ValueError, match="not both"):
        nats_login(_settings(nats_nkey_seed_file=tmp_path / "gw.nk", nats_nkey_seed=key.seed))


@pytest.mark.parametrize("content", ["SUnotaseed", "hello", "{public}"])
def test_unusable_credentials_are_refused_without_echoing_them(
    tmp_path: Path, content: str
) -> None:
    """A file or seed that is not an NKey user seed (a public key included) stops the start
    with a message that does not quote it."""
    content = content.replace("{public}", new_user_key().public)
    (tmp_path / "bad.nk").write_text(content)
    errors = []
    for settings in (
        _settings(nats_nkey_seed_file=tmp_path / "bad.nk"),
        _settings(nats_nkey_seed=content),
        _settings(nats_nkey_seed_file=tmp_path / "missing.nk"),
    ):
        with pytest.raises(ValueError) as info:
            nats_login(settings)
        errors.append(str(info.value))
    assert not any(content in error for error in errors)
    assert "cannot read" in errors[2]


def test_seeds_are_written_for_their_owner_only(tmp_path: Path) -> None:
    """write_seed makes the file 0600 in a 0700 directory, also over an existing file."""
    path = tmp_path / "auth" / "x.nk"
    path.parent.mkdir(mode=0o755)
    path.write_text("old")
    path.chmod(0o644)
    key = new_user_key()
    write_seed(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key(path.read_text()) == key.public
    write_seed(tmp_path / "fresh" / "y.nk", key)
    assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700


def test_the_credentials_script_writes_matching_private_files(tmp_path: Path) -> None:
    """scripts/nats_credentials.py writes seeds, env files and Kubernetes objects that agree
    with each other, valid against the Kubernetes schemas, every file 0600."""
    out = tmp_path / "secrets"
    keys = CREDENTIALS["write_credentials"](out)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    env = dict(line.split("=", 1) for line in (out / "nats.env").read_text().splitlines())
    assert env == {nkey_variable(name): key.public for name, key in keys.items()}
    for service in ("gateway", "session", "history"):
        (line,) = (out / f"{service}.env").read_text().splitlines()
        name, seed = line.split("=", 1)
        assert name == f"{service.upper()}_NATS_NKEY_SEED"
        assert public_key(seed) == keys[service].public
    secret = yaml.safe_load((out / "k8s" / "chat-nats-credentials.yaml").read_text())
    users_map = yaml.safe_load((out / "k8s" / "chat-nats-users.yaml").read_text())
    for doc in (secret, users_map):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    assert {k: public_key(v) for k, v in secret["stringData"].items()} == {
        s: keys[s].public for s in ("gateway", "session", "history")
    }
    assert users_map["data"] == {name: key.public for name, key in keys.items()}
    assert CREDENTIALS["main"]([str(out)]) == 1, "existing keys are kept without --force"


def _batch(seq: int) -> bytes:
    return encode(RoomMessages(messages=[RoomMessage(seq=seq, data=msgspec.Raw(b"{}"))]))


def _event(event: str, seq: int | None) -> bytes:
    return encode(RoomEvent(event=event, data=msgspec.Raw(b"{}"), seq=seq))


@pytest.mark.parametrize(
    "subject, payload, accepted",
    [
        ("chat.room.r.events", _batch(3), True),
        ("chat.room.r.presence", _event("user_joined", None), True),
        ("chat.room.r.presence", _event("user_left", None), True),
        ("chat.room.r.presence", _batch(3), False),  # session passing off a message
        ("chat.room.r.presence", _event("new_message", 3), False),
        ("chat.room.r.presence", _event("new_message", None), False),
        ("chat.room.r.events", _event("user_left", None), False),
        ("chat.room.r.events", _event("new_message", 3), False),
        ("chat.room.r.events", _batch(0), False),
        ("chat.room.r.events", encode(RoomMessages(messages=[])), False),
        ("chat.room.r.presence", _event("user_left", 7), False),
        ("chat.room.r.other", _batch(3), False),
        ("chat.room.r.events", b"not json", False),
    ],
)
def test_a_gateway_takes_each_event_only_from_its_own_subject(
    subject: str, payload: bytes, accepted: bool
) -> None:
    """Messages count only from history's subject, presence only from the session's, so
    each kind has exactly the one publisher the bus allows there."""
    assert room_subjects("r") == "chat.room.r.*"
    assert (parse_room_event("r", room_kind(subject), payload) is not None) is accepted
