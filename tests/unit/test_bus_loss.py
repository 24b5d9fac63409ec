"""When a gateway that lost the bus sheds its clients (pure): not on a blip, once after the
threshold, and it takes clients again when the bus is back."""

from __future__ import annotations

from chat_gateway.busloss import BusLoss, Step


def test_a_blip_under_the_threshold_sheds_nobody() -> None:
    """Lost for 2.9 s of 3, then back: steady throughout."""
    loss = BusLoss(shed_after_s=3)
    steps = [loss.observe(False, t / 10) for t in range(30)] + [loss.observe(True, 3.0)]
    assert set(steps) == {Step.STEADY} and not loss.shed


def test_a_loss_past_the_threshold_sheds_once_then_reopens_when_back() -> None:
    """Lost at 10: shed at 13 (once, however long it lasts), reopen at the first connected
    observation, and a later loss counts from its own start."""
    loss = BusLoss(shed_after_s=3)
    assert loss.observe(True, 0) is Step.STEADY
    assert loss.observe(False, 10) is Step.STEADY
    assert loss.observe(False, 12.9) is Step.STEADY
    assert loss.observe(False, 13) is Step.SHED
    assert [loss.observe(False, 13 + t) for t in range(1, 20)] == [Step.STEADY] * 19
    assert loss.observe(True, 40) is Step.REOPEN
    assert loss.observe(True, 41) is Step.STEADY
    assert loss.observe(False, 50) is Step.STEADY
    assert loss.observe(False, 52) is Step.STEADY
    assert loss.observe(False, 53) is Step.SHED


def test_a_reconnect_resets_the_clock() -> None:
    """Lost 2 s, back, lost 2 s again: two losses under the threshold, no shedding."""
    loss = BusLoss(shed_after_s=3)
    for t, connected in ((0, False), (2, False), (2.5, True), (3, False), (5, False)):
        assert loss.observe(connected, t) is Step.STEADY
