"""The outgoing queue's policy: under pressure the lowest classes go first, acks never."""

from __future__ import annotations

import pytest

from chat_gateway.connection.priority import Admission, FrameClass, Priorities

SOFT = 1000
P = Priorities(SOFT)


@pytest.mark.parametrize(
    ("queued", "expected"),
    [
        (0, {FrameClass.ACK: "write", FrameClass.ROOM: "write",
             FrameClass.PRESENCE: "write", FrameClass.TYPING: "write"}),
        (250, {FrameClass.ACK: "write", FrameClass.ROOM: "write",
               FrameClass.PRESENCE: "write", FrameClass.TYPING: "drop"}),
        (500, {FrameClass.ACK: "write", FrameClass.ROOM: "write",
               FrameClass.PRESENCE: "coalesce", FrameClass.TYPING: "drop"}),
        (1000, {FrameClass.ACK: "write", FrameClass.ROOM: "withhold",
                FrameClass.PRESENCE: "coalesce", FrameClass.TYPING: "drop"}),
        (10**9, {FrameClass.ACK: "write", FrameClass.ROOM: "withhold",
                 FrameClass.PRESENCE: "coalesce", FrameClass.TYPING: "drop"}),
    ],
)  # fmt: skip
def test_each_class_has_its_threshold(queued: int, expected: dict[FrameClass, str]) -> None:
    """Typing goes past a quarter of the soft limit, presence past half, room events at the
    limit; acks at no length."""
    assert {kind: P.admit(kind, queued).value for kind in FrameClass} == expected


def test_a_lower_class_never_outlives_a_higher_one() -> None:
    """At any queue length, whatever is written of a class is written of every class above
    it (the lowest go first)."""
    for queued in range(0, 2 * SOFT, 7):
        written = [P.admit(kind, queued) is Admission.WRITE for kind in sorted(FrameClass)]
        assert written == sorted(written, reverse=True), queued


def test_the_low_water_mark_is_a_quarter_of_the_soft_limit() -> None:
    """The catch-up resumes at or below a quarter of the soft limit."""
    assert P.low == 250
    with pytest.raises(ValueError, match="soft limit") as raised:
        Priorities(0)
    assert raised.type is ValueError
