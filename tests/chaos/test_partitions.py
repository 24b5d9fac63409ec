"""Partitions, not only crashes: the production topology on test hosts (a network namespace
per node and per service instance), cut apart and healed under load; after each heal the
history checker (tests/support/checker.py) proves that nothing acknowledged was lost,
doubled, reordered or missed.

One topology for the module; each scenario heals it before the next. Figures go to
``$CHAOS_REPORT`` (one JSON line per scenario) for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from chat_devstack.linkplan import Degraded
from chat_devstack.servers import RedisServer
from chat_session import redisclient
from chat_session.redisstore import RedisSessionStore
from tests.chaos.ha import churn_user
from tests.chaos.harness import report
from tests.chaos.partitions import PartitionLoad, Topology, figures, loaded, topology
from tests.support.checker import Verdict

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(900)]

DETECT_S = 3.0
"""How long the failover tool takes to notice an isolated Postgres primary (8 s: also 0 lost)."""


@pytest.fixture(scope="module")
async def topo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topology]:
    # A drifted membership (a Redis write lost in a failover) is repaired on the second
    # sweep that sees it: 2 to 4 s here, 15 to 30 s by default.
    repair = {"SESSION_PRESENCE_REPAIR_S": "2"}
    async with topology(tmp_path_factory.mktemp("hosts"), repair) as t:
        yield t


async def _metric_sum(topo: Topology, labels: list[str], name: str) -> float:
    """A labelled counter summed over its labels and over service instances."""
    total = 0.0
    for address in topo.addresses(*labels):
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{address}:9090/metrics") as r,
        ):
            text = await r.text()
        total += sum(
            float(v) for v in re.findall(rf"^{re.escape(name)}\{{.*\}} ([0-9.e+]+)$", text, re.M)
        )
    return total


async def _metric(topo: Topology, label: str, name: str) -> float:
    """A counter of one service instance's ``/metrics`` (0 when absent)."""
    [address] = topo.addresses(label)
    async with aiohttp.ClientSession() as http, http.get(f"http://{address}:9090/metrics") as r:
        text = await r.text()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _until(check: object, timeout: float) -> float:
    """Poll the coroutine function ``check`` until true; the seconds it took."""
    began = time.monotonic()
    async with asyncio.timeout(timeout):
        while not await check():  # type: ignore[operator]  # noqa: ASYNC110 - an HTTP probe
            await asyncio.sleep(0.1)
    return time.monotonic() - began


async def test_a_gateway_cut_off_from_nats_sheds_its_clients_and_they_resume_elsewhere(
    topo: Topology,
) -> None:
    """gateway-1 loses every NATS node while its clients still reach it: it sheds them
    (1012) once the loss is detected and has lasted GATEWAY_BUS_LOSS_SHED_S, they resume
    through the balancer on gateway-2, and after the heal the checker finds every acked
    message stored once and delivered to every member, in order."""
    async with loaded(topo) as load:
        before = await _metric(topo, "gateway-1", "chat_gateway_bus_loss_sheds_total")
        topo.net.plan.cut(topo.addresses("gateway-1"), topo.addresses("nats"))
        await topo.net.apply()

        async def shed() -> bool:
            return await _metric(topo, "gateway-1", "chat_gateway_bus_loss_sheds_total") > before

        shed_s = await _until(shed, 60)
        # Still cut: the shed clients resumed on gateway-2 and every sender goes on.
        await asyncio.wait_for(load.acked(load.acked_count + 2 * len(load.conns)), 60)
        await topo.heal()
        verdict = await load.finish(topo.ha.postgres.dsn, 300)
    await report(figures("gateway cut off from NATS", verdict, load, shed_after_s=round(shed_s, 1)))
    assert verdict.clean, verdict
    assert verdict.acked == verdict.sent == load.total, verdict
    assert shed_s < 15, f"the clients learned of the loss after {shed_s:.1f} s"


async def _isolate_postgres_primary(
    topo: Topology, *, synchronous: bool
) -> tuple[Verdict, PartitionLoad, dict[str, object]]:
    """Under load: the Postgres primary cut off from its standby, then (3 s later, the
    failover tool noticing) from the services too and the standby promoted; the load goes on
    on the new primary; healed, the old primary is stopped and rejoins as the new one's
    standby (``pg_rewind``). ``synchronous=False`` switches the synchronous standby off
    first: the guarantee the scenario exists to test."""
    pair = topo.ha.postgres
    old, standby = pair.primary, pair.standby
    try:
        async with loaded(topo, per_client=150) as load:  # sending before and after
            if not synchronous:
                await pair.commit_alone()
            primary = topo.addresses(old.label)
            topo.net.plan.cut(primary, topo.addresses(standby.label))
            await topo.net.apply()
            acked_at_cut = load.acked_count
            await asyncio.sleep(DETECT_S)  # the failover tool noticing (its detection time)
            topo.net.plan.cut(primary, topo.addresses("history"))
            await topo.net.apply()
            began = time.monotonic()
            await pair.promote_standby()
            promoted_s = time.monotonic() - began
            progress = min(load.total, load.acked_count + 2 * len(load.conns))
            await asyncio.wait_for(load.acked(progress), 120)  # on the new primary
            await topo.heal()
            await old.kill()  # the tool fences the old primary as soon as it can reach it
            await pair.rejoin()
            verdict = await load.finish(pair.dsn, 300)
    finally:
        if not old.running and not pair.standby.running:
            await pair.rejoin()
    return (
        verdict,
        load,
        {
            "acked_before_the_cut": acked_at_cut,
            "promotion_s": round(promoted_s, 1),
            "old_primary_rejoined_as": "standby" if old.is_standby else "primary",
        },
    )


async def test_the_postgres_primary_isolated_then_the_standby_promoted(topo: Topology) -> None:
    """With the synchronous standby (as shipped) the isolated primary acknowledges nothing
    the standby has not flushed, so after the promotion and the old primary's rewind every
    acked message is there, once, delivered in order; sends the isolated primary committed
    without an ack may be lost (counted as unacked)."""
    verdict, load, extra = await _isolate_postgres_primary(topo, synchronous=True)
    await report(figures("postgres primary isolated, standby promoted", verdict, load, **extra))
    assert verdict.clean, verdict
    assert verdict.acked == verdict.sent, verdict
    assert extra["old_primary_rejoined_as"] == "standby"


async def test_without_the_synchronous_standby_the_checker_sees_the_loss(topo: Topology) -> None:
    """The same partition with the synchronous standby switched off: the isolated primary
    goes on acknowledging commits the promoted standby never gets, and the rewind discards
    them. The checker must see it: acknowledged messages lost (this is the guarantee the
    shipped setting buys)."""
    verdict, load, extra = await _isolate_postgres_primary(topo, synchronous=False)
    name = "postgres primary isolated, synchronous standby off"
    await report(figures(name, verdict, load, **extra))
    assert verdict.lost > 0, verdict


async def test_lossy_slow_links_to_postgres_and_nats_for_30_s(topo: Topology) -> None:
    """30% of the packets lost and the rest 200 ms late (±50 ms, so reordered) on every link
    between the history instances and the Postgres primary, and between the gateways and
    the NATS nodes, for 30 s under load: sends slow down and some fail and are sent again,
    and after the heal nothing acknowledged is lost, doubled, reordered or missed."""
    link = Degraded(loss=0.3, delay_ms=200, jitter_ms=50)
    async with loaded(topo, per_client=400, give_up_s=400, warm_up=0.1) as load:
        began, acked_before = time.monotonic(), load.acked_count
        primary = topo.addresses(topo.ha.postgres.primary.label)
        topo.net.plan.degrade(topo.addresses("history"), primary, link)
        topo.net.plan.degrade(topo.addresses("gateway"), topo.addresses("nats"), link)
        await topo.net.apply()
        await asyncio.sleep(30)  # the fault's duration, by definition
        acked_while_degraded = load.acked_count - acked_before
        await topo.heal()
        degraded_s = time.monotonic() - began
        verdict = await load.finish(topo.ha.postgres.dsn)
    await report(
        figures(
            "history-postgres and gateway-nats links: 30% loss, 200 ms, 30 s",
            verdict,
            load,
            acked_per_s_while_degraded=round(acked_while_degraded / degraded_s, 1),
        )
    )
    assert verdict.clean, verdict
    assert verdict.acked == verdict.sent, verdict
    assert acked_while_degraded > 0, "nothing got through the degraded links"


async def _attached(topo: Topology) -> dict[str, list[str]]:
    """NATS node label -> the service instances connected to it (``gateway-1``...)."""
    out: dict[str, list[str]] = {}
    async with aiohttp.ClientSession() as http:
        for node in topo.ha.nats.nodes:
            async with http.get(f"{node.monitor_url}/connz?limit=1000") as reply:
                names = [str(c.get("name", "")) for c in (await reply.json())["connections"]]
            out[node.label] = sorted({n.split(":", 1)[1] for n in names if ":" in n})
    return out


async def _nats_minority(topo: Topology) -> tuple[list[str], list[str], list[str]]:
    """A NATS node with a gateway attached, and what is attached to it: (minority labels,
    their addresses, the majority's addresses: the other NATS nodes and services)."""
    attached = await _attached(topo)
    node = max(attached, key=lambda n: (sum(s.startswith("gateway") for s in attached[n]),
                                         len(attached[n])))  # fmt: skip
    minority = [node, *attached[node]]
    services = [f"{k}-{i}" for k in ("gateway", "session", "history") for i in (1, 2)]
    majority = [n.label for n in topo.ha.nats.nodes if n.label != node]
    majority += [s for s in services if s not in minority]
    return minority, topo.addresses(*minority), topo.addresses(*majority)


async def test_a_nats_node_on_the_minority_side_with_its_services(topo: Topology) -> None:
    """One NATS node and the services connected to it (a gateway among them) cut off from
    the other two nodes and the other services for 15 s under load, each side still
    reaching Postgres, Redis and the clients: the minority's commits reach the majority's
    members after the heal (a room's gap is filled from history), and the checker finds
    nothing acknowledged lost, doubled, reordered or missed."""
    async with loaded(topo, per_client=200, give_up_s=300, warm_up=0.2) as load:
        minority, small, large = await _nats_minority(topo)
        topo.net.plan.cut(small, large)
        await topo.net.apply()
        acked_before = load.acked_count
        await asyncio.sleep(15)  # the partition's duration, by definition
        acked_while_cut = load.acked_count - acked_before
        await topo.heal()
        verdict = await load.finish(topo.ha.postgres.dsn)
    await report(
        figures(
            "a NATS node and its services on the minority side, 15 s",
            verdict,
            load,
            minority=minority,
            acked_while_cut=acked_while_cut,
        )
    )
    assert verdict.clean, verdict
    assert verdict.acked == verdict.sent, verdict


async def test_a_partition_that_flaps_for_a_minute(topo: Topology) -> None:
    """The same NATS minority cut and healed every 4 s for 60 s under load: after the last
    heal the checker finds nothing acknowledged lost, doubled, reordered or missed."""
    flaps = 0
    async with loaded(topo, per_client=600, give_up_s=400, warm_up=0.1) as load:
        minority, small, large = await _nats_minority(topo)
        began = time.monotonic()
        while time.monotonic() - began < 60:
            topo.net.plan.cut(small, large)
            await topo.net.apply()
            await asyncio.sleep(4)  # cut
            await topo.heal()
            flaps += 1
            await asyncio.sleep(4)  # healed
        verdict = await load.finish(topo.ha.postgres.dsn)
    await report(
        figures(
            "NATS minority cut and healed every 4 s for 60 s",
            verdict,
            load,
            minority=minority,
            flaps=flaps,
        )
    )
    assert verdict.clean, verdict
    assert verdict.acked == verdict.sent, verdict


async def _role(topo: Topology, node: RedisServer) -> list[str]:
    return (await topo.ha.redis.cli(node, "ROLE")).split()


async def _replica_of(topo: Topology, primary: RedisServer) -> RedisServer:
    for node in topo.ha.redis.nodes:
        role = await _role(topo, node)
        if role[0] == "slave" and role[1] == primary.host:
            return node
    raise AssertionError(f"{primary.label} has no replica")


async def _is_primary(topo: Topology, node: RedisServer) -> bool:
    return (await _role(topo, node))[0] == "master"


async def _presence_wrong(load: PartitionLoad) -> list[str]:
    """How each room's member list differs from exactly the load's clients in it."""
    wrong = []
    for r, room in enumerate(load.rooms):
        want = {f"p{i}@example.com" for i in range(r, len(load.conns), len(load.rooms))}
        try:
            page = await load.conns[r].call("get_members", {"roomId": room, "limit": 1000})
        except Exception as exc:
            wrong.append(f"{room}: {type(exc).__name__}")
            continue
        if not page.get("ok"):
            wrong.append(f"{room}: {page.get('error')}")
            continue
        got = set(page["users"])
        if got != want or page["userCount"] != len(want):
            wrong.append(
                f"{room}: extra {sorted(got - want)}, missing {sorted(want - got)},"
                f" count {page['userCount']} of {len(want)}"
            )
    return wrong


async def _memberships_of(topo: Topology, rooms: list[str], users: list[str]) -> list[str]:
    """What the session store holds for ``users`` in ``rooms``, both sides, with each of
    their sessions (a failure's diagnosis)."""
    redis = redisclient.connect(topo.ha.redis.url, max_connections=4, timeout_s=5)
    store = RedisSessionStore(redis, prefix=topo.stack.config.extra_env["SESSION_KEY_PREFIX"])
    try:
        room_side = await store.room_memberships()
        session_side = await store.session_memberships()
        found = []
        for room, email, session_id in sorted(room_side | session_side.keys()):
            if room in rooms and email.split("@")[0] in users:
                view = await store.view(session_id)
                found.append(
                    f"{room} {email} {session_id}: room side {(room, email, session_id) in room_side},"
                    f" session side {(room, email, session_id) in session_side}, session {view}"
                )
        return found
    finally:
        await redis.aclose()


async def test_a_redis_cluster_primary_on_the_minority_side(topo: Topology) -> None:
    """A Redis Cluster primary and one session instance cut off from the other Redis nodes
    and the other session instance for 10 s, while users join and leave: the majority
    promotes the primary's replica; the minority primary stops taking writes after the node
    timeout and, healed, rejoins as a replica (its writes since the cut are thrown away).
    Presence heals to exactly the members who are connected, churning users are in no
    list, and the checker finds nothing acknowledged lost."""
    cluster = topo.ha.redis
    victim = (await cluster.primaries())[0]
    replica = await _replica_of(topo, victim)
    stop = asyncio.Event()
    turns: dict[str, int] = {}
    connects: dict[str, list[bool]] = {}
    churn: list[asyncio.Future[None]] = []
    sessions = ["session-1", "session-2"]
    late_name, drift_name = "chat_session_late_refused_total", "chat_session_drift_repaired_total"
    late_before = await _metric_sum(topo, sessions, late_name)
    drifted_before = await _metric_sum(topo, sessions, drift_name)
    try:
        async with loaded(topo, per_client=150, give_up_s=300, warm_up=0.2) as load:
            churn += [
                asyncio.ensure_future(churn_user(topo.stack.client_url, load.rooms, stop,
                                                 f"churn{n}@example.com", turns, connects))
                for n in range(4)
            ]  # fmt: skip
            others = [n.label for n in cluster.nodes if n is not victim]
            topo.net.plan.cut(
                topo.addresses(victim.label, "session-1"), topo.addresses(*others, "session-2")
            )
            await topo.net.apply()
            began = time.monotonic()
            await _until(lambda: _is_primary(topo, replica), 60)
            taken_over_s = time.monotonic() - began
            await asyncio.sleep(max(0.0, 10 - taken_over_s))  # the partition's duration
            await topo.heal()
            await cluster.wait_ok(timeout=60)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*churn), 120)
            await asyncio.wait_for(load.sending, 600)
            wrong: list[str] = []

            async def exact() -> bool:
                wrong[:] = await _presence_wrong(load)
                return not wrong

            try:
                exact_s = await _until(exact, 60)
            except TimeoutError:
                seen = await _memberships_of(topo, load.rooms, [f"churn{n}" for n in range(4)])
                raise AssertionError(
                    f"presence still wrong after 60 s: {wrong}; in the store: {seen};"
                    f" churn connections recovered: {connects}"
                ) from None
            verdict = await load.verdict(topo.ha.postgres.dsn)
            late = await _metric_sum(topo, sessions, late_name) - late_before
            drifted = await _metric_sum(topo, sessions, drift_name) - drifted_before
    finally:
        stop.set()
        for task in churn:
            task.cancel()
    role = (await cluster.cli(victim, "ROLE")).split()[0]
    await report(
        figures(
            "a Redis Cluster primary and a session instance on the minority side, 10 s",
            verdict,
            load,
            replica_promoted_s=round(taken_over_s, 1),
            presence_exact_after_s=round(exact_s, 1),
            late_requests_refused=int(late),
            drift_repaired=int(drifted),
            churn_turns=sum(turns.values()),
            old_primary_is_now=role,
        )
    )
    assert verdict.clean, verdict
    assert verdict.acked == verdict.sent, verdict
    assert len(turns) == 4 and min(turns.values()) > 0, turns
    assert role == "slave", role
