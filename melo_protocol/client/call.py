"""One call: its state as the user sees it, the media it owns and its aiortc peer connection.

A ``Call`` is made and driven by ``CallManager`` (``call_manager.py``); user interfaces observe it:
``call.on_state(callback)`` or ``await call.wait_for(CallState.CONNECTED)``, ``call.reason`` once
ended (one of ``END_REASONS``), ``call.notices`` (no microphone: sending silence, …), ``call.level``
(0..1, the RMS level of the audio last received) and ``await call.quality()``.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from melo_protocol.client.call_media import SAMPLE_RATE, AudioSink, Blackhole, MutableTrack, SilenceTrack
from melo_protocol.client.call_state import CallQuality, CallState, can_enter
from melo_protocol.client.errors import CallError

log = logging.getLogger("melo.calls")
ICE_GATHERING_TIMEOUT_S = 30.0


class Call:
    """One call; observe ``state`` with ``on_state`` callbacks or ``await wait_for(...)``."""

    def __init__(self, call_id: str, peer: str, direction: str, peer_device: str | None = None) -> None:
        self.call_id = call_id
        self.peer = peer
        self.direction = direction  # "outgoing" or "incoming"
        self.peer_device = peer_device
        self.state = CallState.RINGING
        self.reason: str | None = None
        self.notices: list[str] = []
        self.created_at = time.time()
        self.connected_at: float | None = None
        self.ended_at: float | None = None
        self.chat_id: int | None = None
        self.pc: RTCPeerConnection | None = None
        self.source: MutableTrack | None = None
        self.sink: AudioSink | None = None
        self.offer: dict[str, str] | None = None
        self.rang = False  # a device of the callee said "ringing"
        # the manager's bookkeeping: the ring (or missed) timer, and an end under way
        self.timer: asyncio.Task[None] | None = None
        self.ending = False
        self._listeners: list[Callable[[Call], Any]] = []
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"<Call {self.call_id[:8]} {self.direction} {self.peer} {self.state}{reason}>"

    @property
    def outgoing(self) -> bool:
        return self.direction == "outgoing"

    @property
    def muted(self) -> bool:
        return self.source is not None and self.source.muted

    @property
    def level(self) -> float:
        return self.sink.level if self.sink is not None else 0.0

    @property
    def duration(self) -> float:
        if self.connected_at is None:
            return 0.0
        return (self.ended_at or time.time()) - self.connected_at

    def on_state(self, callback: Callable[["Call"], Any]) -> None:
        """Called with the call at every state change (ended included)."""
        self._listeners.append(callback)

    async def wait_for(self, *states: CallState, timeout: float | None = None) -> CallState:
        """Until the call is in one of ``states`` or ended; returns the state. TimeoutError on timeout."""
        async with asyncio.timeout(timeout):
            while self.state not in states and self.state is not CallState.ENDED:
                await self._changed.wait()
        return self.state

    def move_to(self, state: CallState, reason: str | None = None) -> None:
        """Enter ``state`` (``reason`` when it is ended) and tell the listeners; no-op when not allowed."""
        if not can_enter(self.state, state):
            return
        self.state = state
        if state is CallState.CONNECTED:
            self.connected_at = time.time()
        if state is CallState.ENDED:
            self.reason = reason
            self.ended_at = time.time()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:
                log.exception("call state callback failed")

    async def quality(self) -> CallQuality:
        """RTT and packet loss from aiortc's getStats (empty while not connected)."""
        out = CallQuality()
        if self.pc is None or self.state is CallState.ENDED:
            return out
        try:
            report = await self.pc.getStats()
        except Exception:  # a closing connection has no stats
            return out
        for stats in report.values():
            if stats.type == "remote-inbound-rtp":
                out.rtt_ms = stats.roundTripTime * 1000 if stats.roundTripTime is not None else None
                out.loss_fraction = stats.fractionLost
            elif stats.type == "inbound-rtp":
                out.packets_received = stats.packetsReceived
                out.packets_lost = stats.packetsLost
                out.jitter_ms = stats.jitter / SAMPLE_RATE * 1000 if stats.jitter is not None else None
        return out

    def open_connection(
        self,
        ice_servers: list[RTCIceServer],
        source: MediaStreamTrack | None,
        sink: AudioSink | None,
        *,
        on_failed: Callable[[], Awaitable[None]],
        add_source: bool = True,
    ) -> RTCPeerConnection:
        """The call's peer connection, with its source (silence when None, sent unless ``add_source`` is
        False) and its sink (a blackhole when None); connected moves the call on, failed calls ``on_failed``.
        """
        # an explicit (possibly empty) list: aiortc would otherwise reach for a public STUN server
        pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        self.pc = pc
        self.source = MutableTrack(source if source is not None else SilenceTrack())
        self.sink = sink if sink is not None else Blackhole()
        if add_source:
            pc.addTrack(self.source)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self.sink is not None:
                self.sink.start(track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                self.move_to(CallState.CONNECTED)
            elif pc.connectionState == "failed" and self.state is not CallState.ENDED:
                await on_failed()

        return pc


def session_description(data: dict[str, Any], expected: str) -> RTCSessionDescription:
    """The SDP ``offer`` or ``answer`` a signal carries; CallError when it is not one."""
    sdp, kind = data.get("sdp"), data.get("type")
    if not isinstance(sdp, str) or kind != expected:
        raise CallError(f"malformed {expected}")
    return RTCSessionDescription(sdp=sdp, type=expected)


async def ice_gathered(pc: RTCPeerConnection) -> None:
    """aiortc gathers during setLocalDescription; wait for 'complete' in case it has not finished."""
    if pc.iceGatheringState == "complete":
        return
    done = asyncio.Event()
    pc.on("icegatheringstatechange", lambda: done.set() if pc.iceGatheringState == "complete" else None)
    async with asyncio.timeout(ICE_GATHERING_TIMEOUT_S):
        while pc.iceGatheringState != "complete":
            await done.wait()
