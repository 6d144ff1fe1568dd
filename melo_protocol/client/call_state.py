"""The rules of a call, without I/O: its states, which signals it takes, and what each one does.

Pure functions of plain values (no aiortc, no sockets, no clock): ``CallManager`` asks them and does
the I/O around the answer (the peer connection, the Messenger, the timers). The states of a call:
ringing → connecting → connected → ended, each entered at most once; ended is final.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

ACTIONS = ("invite", "ringing", "answer", "reject", "busy", "hangup")
END_REASONS = (
    "hangup",
    "remote_hangup",
    "rejected",
    "busy",
    "no_answer",
    "offline",
    "missed",
    "answered_elsewhere",
    "failed",
    "unreachable",
)
OUTGOING = "outgoing"
INCOMING = "incoming"


class CallState(StrEnum):
    RINGING = "ringing"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ENDED = "ended"


@dataclass
class CallQuality:
    rtt_ms: float | None = None  # from RTCP receiver reports about our stream
    loss_fraction: float | None = None  # fraction of our packets the peer lost (last report)
    packets_received: int = 0
    packets_lost: int = 0  # of the peer's packets, as we count them
    jitter_ms: float | None = None


def can_enter(current: CallState, new: CallState) -> bool:
    """Whether a call in ``current`` moves to ``new``: never out of ended, never to where it is."""
    return current is not CallState.ENDED and current is not new


# -- what a signal does to the call it names ----------------------------------------------------------
@dataclass(frozen=True)
class Rang:
    """A device of the callee is ringing: the callee is online."""


@dataclass(frozen=True)
class Answered:
    """The callee answered from ``device_id``: connect to it; their other devices stop ringing."""

    device_id: str


@dataclass(frozen=True)
class Ended:
    """The call ends for ``reason`` (one of ``END_REASONS``); nothing is signalled back."""

    reason: str


Step = Rang | Answered | Ended | None


def is_call_signal(action: str, call_id: str) -> bool:
    """A signal any call could take: a known action naming a call."""
    return action in ACTIONS and bool(call_id)


def takes_signal(
    *,
    peer: str,
    peer_device: str | None,
    state: CallState,
    ending: bool,
    sender: str,
    sender_device: str,
) -> bool:
    """Whether a call takes a signal (other than an invite) from ``sender``'s ``sender_device``: only from
    its peer, only while not ended; once answered, only the answering device speaks for the callee."""
    if sender != peer or state is CallState.ENDED or ending:
        return False
    return peer_device is None or sender_device == peer_device


def on_signal(*, outgoing: bool, state: CallState, action: str, data: Mapping[str, Any], device_id: str) -> Step:
    """What a signal from the peer (``device_id``) does to a call it was taken by (see ``takes_signal``)."""
    ringing = state is CallState.RINGING
    if action == "ringing" and outgoing:
        return Rang()
    if outgoing and ringing and action == "answer":
        return Answered(device_id)
    if outgoing and ringing and action == "reject":
        return Ended("rejected")
    if outgoing and ringing and action == "busy":
        return Ended("busy")
    if action == "hangup":
        reason = str(data.get("reason", ""))
        if not outgoing and ringing:  # the caller gave up, or another device of ours answered
            return Ended("answered_elsewhere" if reason == "answered_elsewhere" else "missed")
        if reason != "answered_elsewhere":  # told to the callee's other devices, not to us
            return Ended("remote_hangup")
    return None


def invite_is_stale(data: Mapping[str, Any], now: float) -> bool:
    """An invite past its ``expires_at`` (a queued one reaching a device that was offline) rings nothing."""
    expires = data.get("expires_at")
    return isinstance(expires, int | float) and expires < now


def offline_after_wait(state: CallState, rang: bool) -> bool:
    """After the offline wait: still ringing and no device of the callee said so, so none is online."""
    return state is CallState.RINGING and not rang


def hang_up_to_all_devices(*, outgoing: bool, peer_device: str | None) -> bool:
    """Hanging up an outgoing call no device has answered tells every device of the callee (all ring)."""
    return outgoing and peer_device is None


def records_missed(*, outgoing: bool, reason: str) -> bool:
    """An outgoing call nobody answered leaves a ``call.missed`` event in the DM."""
    return outgoing and reason in ("no_answer", "offline")
