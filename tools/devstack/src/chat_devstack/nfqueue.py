"""The netlink messages of Linux's NFQUEUE (pure, no I/O): bind a queue, read the ids of
the packets it holds, give each a verdict.

A packet sent to an NFQUEUE by a firewall rule waits in the kernel until a process says
``ACCEPT`` or ``DROP`` for its id; verdicts may come in any order. The delayer
(:mod:`chat_devstack.delayer`) gives them late: that is how a link gets latency and
reordering where ``tc netem`` is not built into the kernel. Only the packet's id is asked
for (``COPY_META``): its bytes never leave the kernel.

Layout (``linux/netfilter/nfnetlink_queue.h``): every message is a ``nlmsghdr``, an
``nfgenmsg`` (family, version, queue number big-endian) and attributes (``nlattr``,
4-byte aligned); the numbers inside the attributes are big-endian.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

__all__ = [
    "ACCEPT",
    "DROP",
    "NETLINK_NETFILTER",
    "acknowledged",
    "bind_queue",
    "packet_ids",
    "set_copy_meta",
    "verdict",
]

NETLINK_NETFILTER = 12
_SUBSYS_QUEUE = 3
_MSG_PACKET = (_SUBSYS_QUEUE << 8) | 0
_MSG_VERDICT = (_SUBSYS_QUEUE << 8) | 1
_MSG_CONFIG = (_SUBSYS_QUEUE << 8) | 2
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_CFG_CMD = 1
_CFG_PARAMS = 2
_CMD_BIND = 1
_COPY_META = 1
_PACKET_HDR = 1
_VERDICT_HDR = 2
_NLMSG_ERROR = 2
DROP = 0
ACCEPT = 1

_nlmsghdr = struct.Struct("=IHHII")
_nlattr = struct.Struct("=HH")


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, data: bytes) -> bytes:
    return (
        _nlattr.pack(_nlattr.size + len(data), kind)
        + data
        + b"\0" * (_align(len(data)) - len(data))
    )


def _message(kind: int, flags: int, queue: int, attrs: bytes, seq: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return _nlmsghdr.pack(_nlmsghdr.size + len(body), kind, flags, seq, 0) + body


def bind_queue(queue: int, *, seq: int = 1) -> bytes:
    """Bind this socket to ``queue`` for IPv4 packets (acknowledged)."""
    cmd = struct.pack("=BBH", _CMD_BIND, 0, socket.htons(socket.AF_INET))
    return _message(_MSG_CONFIG, _NLM_F_REQUEST | _NLM_F_ACK, queue, _attr(_CFG_CMD, cmd), seq)


def set_copy_meta(queue: int, *, seq: int = 2) -> bytes:
    """Ask for the packets' metadata only (acknowledged)."""
    params = struct.pack(">IB", 0, _COPY_META)
    return _message(
        _MSG_CONFIG, _NLM_F_REQUEST | _NLM_F_ACK, queue, _attr(_CFG_PARAMS, params), seq
    )


def verdict(queue: int, packet_id: int, decision: int) -> bytes:
    """``decision`` (:data:`ACCEPT` or :data:`DROP`) for the packet ``packet_id``."""
    return _message(
        _MSG_VERDICT,
        _NLM_F_REQUEST,
        queue,
        _attr(_VERDICT_HDR, struct.pack(">II", decision, packet_id)),
        0,
    )


def acknowledged(data: bytes) -> int:
    """The error code of the netlink acknowledgement in ``data`` (0: done)."""
    _length, kind, _flags, _seq, _pid = _nlmsghdr.unpack_from(data)
    if kind != _NLMSG_ERROR:
        raise ValueError(f"not a netlink acknowledgement (type {kind})")
    error: int = struct.unpack_from("=i", data, _nlmsghdr.size)[0]
    return -error


def packet_ids(data: bytes) -> Iterator[int]:
    """The ids of the packets in one ``recv`` (several messages may come together)."""
    offset = 0
    while offset + _nlmsghdr.size <= len(data):
        length, kind, _flags, _seq, _pid = _nlmsghdr.unpack_from(data, offset)
        if length < _nlmsghdr.size:
            return
        if kind == _MSG_PACKET:
            at = offset + _nlmsghdr.size + 4  # past the nfgenmsg
            while at + _nlattr.size <= offset + length:
                size, attr_kind = _nlattr.unpack_from(data, at)
                if size < _nlattr.size:
                    break
                if attr_kind & 0x7FFF == _PACKET_HDR:
                    yield struct.unpack_from(">I", data, at + _nlattr.size)[0]
                at += _align(size)
        offset += _align(length)
