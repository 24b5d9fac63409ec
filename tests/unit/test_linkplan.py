"""The link plan (which packets between test hosts are dropped or delayed) and the NFQUEUE
messages the delayer speaks: pure, from fixtures."""

from __future__ import annotations

import socket
import struct

import pytest

from chat_devstack import nfqueue
from chat_devstack.linkplan import Degraded, LinkPlan

OUT, A, B, C = "10.9.9.1", "10.9.9.2", "10.9.9.3", "10.9.9.4"


def _rules(plan: LinkPlan, host: str) -> dict[str, list[str]]:
    return {
        chain: [" ".join(r) for r in rules] for chain, rules in plan.firewall(host).rules.items()
    }


def test_a_cut_both_ways_drops_at_each_receiver() -> None:
    """A cut between two hosts is enforced where each packet arrives: A drops what B sends,
    B what A sends; nobody else has a rule."""
    plan = LinkPlan(outside=OUT)
    plan.cut([A], [B])
    assert _rules(plan, A) == {"CHAT-IN": [f"-s {B} -j DROP"], "CHAT-OUT": []}
    assert _rules(plan, B) == {"CHAT-IN": [f"-s {A} -j DROP"], "CHAT-OUT": []}
    assert _rules(plan, C) == {"CHAT-IN": [], "CHAT-OUT": []}
    assert plan.hosts() == {A, B}


def test_a_one_way_cut_drops_one_direction_only() -> None:
    """``both_ways=False``: A's packets to B are dropped (at B), B's to A pass."""
    plan = LinkPlan(outside=OUT)
    plan.cut([A], [B], both_ways=False)
    assert _rules(plan, B)["CHAT-IN"] == [f"-s {A} -j DROP"]
    assert _rules(plan, A) == {"CHAT-IN": [], "CHAT-OUT": []}


def test_the_outside_host_is_never_given_rules() -> None:
    """Cutting a host from the machine's own namespace (the clients) puts both directions
    on the host: its INPUT from the outside, its OUTPUT to it."""
    plan = LinkPlan(outside=OUT)
    plan.cut([OUT], [A])
    assert _rules(plan, A) == {"CHAT-IN": [f"-s {OUT} -j DROP"], "CHAT-OUT": [f"-d {OUT} -j DROP"]}
    assert plan.hosts() == {A}


def test_a_degraded_link_loses_then_queues_one_queue_per_delay() -> None:
    """Loss is a random drop before the queue; two links with the same delay share a queue,
    a different delay gets the next."""
    plan = LinkPlan(outside=OUT)
    plan.degrade([B, C], [A], Degraded(loss=0.3, delay_ms=200, jitter_ms=50), both_ways=False)
    plan.degrade([OUT], [A], Degraded(delay_ms=20), both_ways=False)
    wall = plan.firewall(A)
    assert [" ".join(r) for r in wall.rules["CHAT-IN"]] == [
        f"-s {OUT} -j NFQUEUE --queue-num 100",
        f"-s {B} -m statistic --mode random --probability 0.3000 -j DROP",
        f"-s {B} -j NFQUEUE --queue-num 101",
        f"-s {C} -m statistic --mode random --probability 0.3000 -j DROP",
        f"-s {C} -j NFQUEUE --queue-num 101",
    ]
    assert [(q.number, q.delay_ms, q.jitter_ms) for q in wall.queues] == [
        (100, 20, 0),
        (101, 200, 50),
    ]


def test_heal_ends_the_faults_between_two_sets_or_all() -> None:
    """Healing A and B leaves the fault between A and C; healing everything leaves none."""
    plan = LinkPlan(outside=OUT)
    plan.cut([A], [B, C])
    plan.heal([A], [B])
    assert plan.hosts() == {A, C} and plan.faults == 2
    plan.heal()
    assert plan.faults == 0 and plan.hosts() == set()


def test_bad_degradations_are_refused() -> None:
    """Loss outside 0..1 and a jitter larger than the delay are refused."""
    for bad in ({"loss": 1.5}, {"delay_ms": 10, "jitter_ms": 20}, {"delay_ms": -1}):
        with pytest.raises(ValueError):
            Degraded(**bad)  # type: ignore[arg-type]


def _packet_message(packet_id: int) -> bytes:
    """An NFQNL_MSG_PACKET as the kernel sends it: a header attribute with the id, then a
    mark attribute."""
    hdr = struct.pack("=HH", 4 + 7, 1) + struct.pack(">IHB", packet_id, 0x0800, 3) + b"\0"
    mark = struct.pack("=HH", 8, 3) + struct.pack(">I", 7)
    body = struct.pack("=BBH", socket.AF_INET, 0, socket.htons(100)) + hdr + mark
    return struct.pack("=IHHII", 16 + len(body), (3 << 8) | 0, 0, 0, 0) + body


def test_packet_ids_are_read_from_several_messages_in_one_receive() -> None:
    """Two packet messages in one datagram give both ids, in order."""
    assert list(nfqueue.packet_ids(_packet_message(7) + _packet_message(8))) == [7, 8]


def test_a_verdict_names_the_queue_the_packet_and_the_decision() -> None:
    """The verdict message: nfgenmsg with the queue (big-endian), then the verdict header."""
    data = nfqueue.verdict(100, 42, nfqueue.ACCEPT)
    length, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", data)
    assert (length, kind, flags) == (len(data), (3 << 8) | 1, 1)
    assert struct.unpack_from(">H", data, 18) == (100,)
    assert struct.unpack_from(">II", data, 24) == (nfqueue.ACCEPT, 42)


def test_acknowledgements_are_read_as_error_codes() -> None:
    """A netlink ack carries 0 or a negative errno; anything else is not an ack."""
    ok = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", 0) + bytes(16)
    refused = struct.pack("=IHHII", 36, 2, 0, 1, 0) + struct.pack("=i", -1) + bytes(16)
    assert nfqueue.acknowledged(ok) == 0 and nfqueue.acknowledged(refused) == 1
    with pytest.raises(ValueError):
        nfqueue.acknowledged(_packet_message(1))
