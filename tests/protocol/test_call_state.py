"""The rules of a call (``call_state``), data in and decisions out: no aiortc, no server, no event loop."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from melo_protocol.client.call_state import (
    ACTIONS,
    END_REASONS,
    Answered,
    CallState,
    Ended,
    Rang,
    Step,
    can_enter,
    hang_up_to_all_devices,
    invite_is_stale,
    is_call_signal,
    offline_after_wait,
    on_signal,
    records_missed,
    takes_signal,
)

RINGING, CONNECTING, CONNECTED, ENDED = CallState.RINGING, CallState.CONNECTING, CallState.CONNECTED, CallState.ENDED


def signal(action: str, *, outgoing: bool, state: CallState = RINGING, reason: str | None = None) -> Step:
    data = {"call_id": "c1", "version": 1} | ({"reason": reason} if reason is not None else {})
    return on_signal(outgoing=outgoing, state=state, action=action, data=data, device_id="BOBPHONE")


def test_the_caller_hears_ringing_then_an_answer_from_one_device() -> None:
    assert signal("ringing", outgoing=True) == Rang()
    assert signal("answer", outgoing=True) == Answered("BOBPHONE")


@pytest.mark.parametrize(("action", "reason"), [("reject", "rejected"), ("busy", "busy")])
def test_a_refusal_ends_a_ringing_outgoing_call(action: str, reason: str) -> None:
    assert signal(action, outgoing=True) == Ended(reason)
    # once the call is answered, a late refusal (from another device) changes nothing
    assert signal(action, outgoing=True, state=CONNECTING) is None
    assert signal(action, outgoing=True, state=CONNECTED) is None


@pytest.mark.parametrize("state", [CONNECTING, CONNECTED])
def test_an_answer_to_an_answered_call_does_nothing(state: CallState) -> None:
    assert signal("answer", outgoing=True, state=state) is None


@pytest.mark.parametrize("action", ["answer", "reject", "busy", "ringing"])
def test_the_callee_takes_no_answers_refusals_or_ringing(action: str) -> None:
    for state in (RINGING, CONNECTING, CONNECTED):
        assert signal(action, outgoing=False, state=state) is None


def test_a_hangup_while_the_callee_rings_is_a_missed_call_or_an_answer_elsewhere() -> None:
    assert signal("hangup", outgoing=False, reason="hangup") == Ended("missed")
    assert signal("hangup", outgoing=False, reason="no_answer") == Ended("missed")
    assert signal("hangup", outgoing=False) == Ended("missed")
    assert signal("hangup", outgoing=False, reason="answered_elsewhere") == Ended("answered_elsewhere")


@pytest.mark.parametrize("outgoing", [True, False])
def test_a_hangup_of_a_call_under_way_is_a_remote_hangup(outgoing: bool) -> None:
    for state in (CONNECTING, CONNECTED):
        assert signal("hangup", outgoing=outgoing, state=state, reason="hangup") == Ended("remote_hangup")
        assert signal("hangup", outgoing=outgoing, state=state, reason="failed") == Ended("remote_hangup")
        # meant for the callee's other devices: the call that was answered goes on
        assert signal("hangup", outgoing=outgoing, state=state, reason="answered_elsewhere") is None
    assert signal("hangup", outgoing=True, reason="hangup") == Ended("remote_hangup")


def test_every_end_a_signal_gives_is_a_known_reason() -> None:
    for action in ACTIONS:
        for outgoing in (True, False):
            for state in (RINGING, CONNECTING, CONNECTED):
                for reason in (None, "hangup", "answered_elsewhere"):
                    step = signal(action, outgoing=outgoing, state=state, reason=reason)
                    assert not isinstance(step, Ended) or step.reason in END_REASONS


def test_only_known_actions_naming_a_call_are_call_signals() -> None:
    assert all(is_call_signal(action, "c1") for action in ACTIONS)
    assert not is_call_signal("invite", "")
    assert not is_call_signal("dial", "c1")


def takes(
    *,
    peer_device: str | None = None,
    state: CallState = RINGING,
    ending: bool = False,
    sender: str = "bob",
    sender_device: str = "BOBPHONE",
) -> bool:
    return takes_signal(
        peer="bob", peer_device=peer_device, state=state, ending=ending, sender=sender, sender_device=sender_device
    )


def test_a_call_takes_signals_only_from_its_peer_while_it_lasts() -> None:
    assert takes()
    assert takes(state=CONNECTED)
    assert not takes(sender="mallory")
    assert not takes(state=ENDED)
    assert not takes(ending=True)


def test_once_answered_only_the_answering_device_speaks_for_the_callee() -> None:
    assert takes(peer_device="BOBPHONE", sender_device="BOBPHONE")
    assert not takes(peer_device="BOBPHONE", sender_device="BOBLAPTOP")
    assert takes(peer_device=None, sender_device="BOBLAPTOP")  # before the answer, any of their devices


def test_an_invite_past_its_expiry_is_stale() -> None:
    assert invite_is_stale({"expires_at": 99.5}, now=100.0)
    assert not invite_is_stale({"expires_at": 100.5}, now=100.0)
    assert not invite_is_stale({"expires_at": 100}, now=100.0)
    assert not invite_is_stale({}, now=100.0)  # an invite without expiry (an older client) rings
    assert not invite_is_stale({"expires_at": "soon"}, now=100.0)


def test_offline_after_the_wait_only_when_still_ringing_and_no_device_rang() -> None:
    assert offline_after_wait(RINGING, rang=False)
    assert not offline_after_wait(RINGING, rang=True)
    assert not offline_after_wait(CONNECTING, rang=False)
    assert not offline_after_wait(ENDED, rang=False)


def test_hanging_up_an_unanswered_outgoing_call_tells_every_device() -> None:
    assert hang_up_to_all_devices(outgoing=True, peer_device=None)
    assert not hang_up_to_all_devices(outgoing=True, peer_device="BOBPHONE")
    assert not hang_up_to_all_devices(outgoing=False, peer_device="ALICEPHONE")


def test_only_unanswered_outgoing_calls_are_recorded_as_missed() -> None:
    assert records_missed(outgoing=True, reason="no_answer")
    assert records_missed(outgoing=True, reason="offline")
    for reason in set(END_REASONS) - {"no_answer", "offline"}:
        assert not records_missed(outgoing=True, reason=reason)
    for reason in END_REASONS:
        assert not records_missed(outgoing=False, reason=reason)


@given(st.lists(st.sampled_from(list(CallState)), max_size=12))
def test_a_call_never_leaves_ended_nor_reenters_its_state(moves: list[CallState]) -> None:
    state, seen = RINGING, [RINGING]
    for new in moves:
        if can_enter(state, new):
            assert state is not ENDED and new is not state
            state = new
            seen.append(state)
    assert ENDED not in seen[:-1]  # nothing follows ended
    assert all(a is not b for a, b in itertools.pairwise(seen))
