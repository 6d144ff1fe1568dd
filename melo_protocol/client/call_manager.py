"""Audio calls over the Messenger: places and answers calls, and routes their signalling to them.

Signalling (``invite`` with the complete SDP offer, ``ringing``, ``answer``, ``reject``, ``busy``,
``hangup``) travels only as Olm-encrypted to-device messages (``Messenger.send_call_signal``), so the
server relays it but can neither read nor alter it: it cannot swap the DTLS fingerprint in the SDP.
aiortc does not trickle ICE, so each side sends its description after ICE gathering is complete.

For user interfaces (TUI, CLI): the app owns the event loop and passes call signals in::

    manager = CallManager(messenger)                      # ring_timeout=45 s by default
    manager.on_incoming(lambda call: show_modal(call))    # or: call = await manager.incoming.get()
    async for event in messenger.events():
        if isinstance(event, events.CallSignal):
            await manager.handle(event)

    call = await manager.start("bob", source=ToneTrack(440), sink=WavRecorder("out.wav"))
    call.on_state(lambda c: redraw(c.state, c.reason))    # ringing → connecting → connected → ended
    await call.wait_for(CallState.CONNECTED, timeout=30)
    await manager.mute(call, True)
    print(await call.quality())                           # rtt_ms, loss_fraction, packets_lost …
    await manager.hang_up(call)

The call itself is in ``call.py``, its rules (which signal does what) in ``call_state.py``, the media in
``call_media.py``. One call per device: a second incoming invite is answered ``busy``. Calling an
unknown user raises ``NotFound`` (``user_not_found``). A callee with no device online (presence, from
the chat list) ends the call at once as ``offline``, without ringing; an unanswered outgoing call
(``no_answer`` after the ring timeout, or ``offline`` when no device of the callee rang) is recorded as a
``call.missed`` event in the DM (``POST /v1/chats/{id}/calls/missed``, metadata only).
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiortc import RTCIceServer, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from melo_protocol.client import events as ev
from melo_protocol.client.call import Call, ice_gathered, session_description
from melo_protocol.client.call_media import AudioSink
from melo_protocol.client.call_state import (
    Answered,
    CallState,
    Ended,
    Rang,
    hang_up_to_all_devices,
    invite_is_stale,
    is_call_signal,
    offline_after_wait,
    on_signal,
    records_missed,
    takes_signal,
)
from melo_protocol.client.errors import CallError, MeloError, NotFound
from melo_protocol.wire import ErrorCode

log = logging.getLogger("melo.calls")

RING_TIMEOUT_S = 45.0
OFFLINE_TIMEOUT_S = 15.0  # no device of the callee said "ringing" by then: they are offline
ICE_SERVERS_TTL_S = 3600.0  # TURN credentials live a day; fetched again hourly
Notify = tuple[str, dict[str, Any], bool]  # (action, data, to all devices): the signal an end sends


class CallManager:
    """Places and answers calls for one Messenger (one device). See the module docstring."""

    def __init__(
        self,
        messenger: Any,
        *,
        ring_timeout: float = RING_TIMEOUT_S,
        offline_timeout: float = OFFLINE_TIMEOUT_S,
        ice_servers: list[RTCIceServer] | None = None,
        record_missed: bool = True,
    ) -> None:
        self.messenger = messenger
        self.ring_timeout = ring_timeout
        self.offline_timeout = min(offline_timeout, ring_timeout)
        self.record_missed = record_missed
        self._ice_fixed = ice_servers
        self._ice_servers: list[RTCIceServer] = []
        self._ice_fetched_at: float | None = None
        self.calls: dict[str, Call] = {}
        self.incoming: asyncio.Queue[Call] = asyncio.Queue()
        self._incoming_listeners: list[Callable[[Call], Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- public API --------------------------------------------------------------------------------
    @property
    def active(self) -> Call | None:
        """The call of this device that has not ended, if any."""
        return next((c for c in self.calls.values() if c.state is not CallState.ENDED), None)

    def on_incoming(self, callback: Callable[[Call], Any]) -> None:
        self._incoming_listeners.append(callback)

    async def start(
        self,
        username: str,
        *,
        source: MediaStreamTrack | Callable[[], MediaStreamTrack] | None = None,
        sink: AudioSink | Callable[[], AudioSink] | None = None,
        chat_id: int | None = None,
    ) -> Call:
        """Call ``username``: sends the invite (complete SDP offer) to all their devices.

        ``source`` and ``sink`` may be functions making them (``open_microphone``…): called only when the
        call goes ahead, so a call to nobody or to someone offline opens no audio device.
        """
        if self.active is not None:
            raise CallError("another call is active on this device")
        username = username.removeprefix("@").lower()
        if username == self.messenger.username:
            raise CallError("you cannot call yourself")
        direct_id, online = await self._peer_presence(username)
        call = Call(uuid.uuid4().hex, username, "outgoing")
        call.chat_id = chat_id if chat_id is not None else direct_id
        self.calls[call.call_id] = call
        if online is False:  # no device of theirs holds a socket: nothing would ring
            await self._end(call, "offline")
            return call
        try:
            if callable(source) and not isinstance(source, MediaStreamTrack):
                source = source()
            if callable(sink):
                sink = sink()
            pc = self._open_connection(call, await self._ice(), source, sink)
            await pc.setLocalDescription(await pc.createOffer())
            await ice_gathered(pc)
            offer = {"sdp": pc.localDescription.sdp, "type": "offer", "expires_at": time.time() + self.ring_timeout}
            await self._signal(call, "invite", offer, all_devices=True)
        except MeloError as exc:
            await self._end(call, "unreachable")
            raise CallError(f"cannot call {username}: {exc.message}") from None
        call.timer = self._spawn(self._ring_timer(call))
        return call

    async def accept(
        self, call: Call, *, source: MediaStreamTrack | None = None, sink: AudioSink | None = None
    ) -> None:
        """Answer an incoming call (complete SDP answer to the inviting device)."""
        if call.direction != "incoming" or call.state is not CallState.RINGING or call.offer is None:
            raise CallError(f"call {call.call_id[:8]} cannot be accepted ({call.state})")
        self._cancel_timer(call)
        call.move_to(CallState.CONNECTING)
        try:
            pc = self._open_connection(call, await self._ice(), source, sink, add_source=False)
            await pc.setRemoteDescription(session_description(call.offer, "offer"))
            assert call.source is not None
            pc.addTrack(call.source)
            await pc.setLocalDescription(await pc.createAnswer())
            await ice_gathered(pc)
            await self._signal(call, "answer", {"sdp": pc.localDescription.sdp, "type": "answer"})
        except (MeloError, ValueError) as exc:
            await self._end(call, "failed")
            raise CallError(f"cannot answer: {exc}") from None

    async def reject(self, call: Call) -> None:
        if call.state is CallState.ENDED:
            return
        with contextlib.suppress(MeloError):
            await self._signal(call, "reject", {})
        await self._end(call, "rejected")

    async def hang_up(self, call: Call) -> None:
        if call.state is CallState.ENDED:
            return
        to_all = hang_up_to_all_devices(outgoing=call.outgoing, peer_device=call.peer_device)
        await self._end(call, "hangup", notify=("hangup", {"reason": "hangup"}, to_all))

    async def mute(self, call: Call, on: bool = True) -> None:
        if call.source is not None:
            call.source.muted = on

    async def handle(self, event: ev.Event) -> Call | None:
        """Feed every ``events.CallSignal`` from ``Messenger.events()`` here; returns the call it concerned."""
        if not isinstance(event, ev.CallSignal) or not is_call_signal(event.action, event.call_id):
            return None
        if event.user == self.messenger.username and event.device_id == self.messenger.device_id:
            return None
        if event.action == "invite":
            return await self._on_invite(event)
        call = self.calls.get(event.call_id)
        if call is None or not takes_signal(
            peer=call.peer,
            peer_device=call.peer_device,
            state=call.state,
            ending=call.ending,
            sender=event.user,
            sender_device=event.device_id,
        ):
            return None
        try:
            await self._dispatch(call, event)
        except (CallError, ValueError) as exc:
            log.info("call %s: bad %s: %s", call.call_id[:8], event.action, exc)
            await self._end(call, "failed", notify=("hangup", {"reason": "failed"}, False))
        return call

    async def close(self) -> None:
        """Hang up what is active and close every connection."""
        for call in list(self.calls.values()):
            if call.state is not CallState.ENDED:
                await self.hang_up(call)
        for task in list(self._tasks):
            task.cancel()

    # -- signalling --------------------------------------------------------------------------------
    async def _peer_presence(self, username: str) -> tuple[int | None, bool | None]:
        """(our DM with ``username``, whether any device of theirs is online); (None, None) without a DM.
        Raises NotFound for a user who does not exist."""
        for chat in await self.messenger.client.list_chats():
            if chat.kind == "direct" and chat.peer is not None and chat.peer.username == username:
                return chat.id, chat.peer.online
        try:
            await self.messenger.client.get_user(username)
        except NotFound as exc:
            if exc.code == ErrorCode.USER_NOT_FOUND:
                raise NotFound(exc.status, exc.code, f"no such user: {username}", exc.details) from None
            raise
        return None, None

    async def _on_invite(self, event: ev.CallSignal) -> Call | None:
        if event.call_id in self.calls or invite_is_stale(event.data, time.time()):
            return None
        if self.active is not None:
            with contextlib.suppress(MeloError):
                await self.messenger.send_call_signal(
                    event.user, "busy", {"call_id": event.call_id}, device_id=event.device_id
                )
            return None
        call = Call(event.call_id, event.user, "incoming", event.device_id)
        call.offer = {"sdp": str(event.data.get("sdp", "")), "type": str(event.data.get("type", ""))}
        self.calls[call.call_id] = call
        with contextlib.suppress(MeloError):
            await self._signal(call, "ringing", {})
        call.timer = self._spawn(self._missed_timer(call))
        for callback in list(self._incoming_listeners):
            try:
                callback(call)
            except Exception:
                log.exception("incoming call callback failed")
        self.incoming.put_nowait(call)
        return call

    async def _dispatch(self, call: Call, event: ev.CallSignal) -> None:
        step = on_signal(
            outgoing=call.outgoing, state=call.state, action=event.action, data=event.data, device_id=event.device_id
        )
        if isinstance(step, Rang):
            call.rang = True
        elif isinstance(step, Answered):
            assert call.pc is not None
            call.peer_device = step.device_id
            self._cancel_timer(call)
            call.move_to(CallState.CONNECTING)
            await call.pc.setRemoteDescription(session_description(event.data, "answer"))
            # the callee's other devices stop ringing
            stop_ringing = {"reason": "answered_elsewhere", "answered_by": step.device_id}
            self._spawn(self._signal(call, "hangup", stop_ringing, all_devices=True))
        elif isinstance(step, Ended):
            await self._end(call, step.reason)

    async def _signal(self, call: Call, action: str, data: dict[str, Any], *, all_devices: bool = False) -> None:
        await self.messenger.send_call_signal(
            call.peer,
            action,
            {"call_id": call.call_id, "version": 1, **data},
            device_id=None if all_devices else call.peer_device,
        )

    # -- media and connection ----------------------------------------------------------------------
    async def _ice(self) -> list[RTCIceServer]:
        if self._ice_fixed is not None:
            return self._ice_fixed
        if self._ice_fetched_at is not None and time.monotonic() - self._ice_fetched_at < ICE_SERVERS_TTL_S:
            return self._ice_servers
        servers: list[RTCIceServer] = []
        try:
            for item in (await self.messenger.client.ice_servers()).ice_servers:
                servers.append(RTCIceServer(urls=list(item.urls), username=item.username, credential=item.credential))
        except MeloError as exc:
            log.info("no ICE servers from the server (%s): host candidates only", exc)
        self._ice_servers, self._ice_fetched_at = servers, time.monotonic()
        return servers

    def _open_connection(
        self,
        call: Call,
        ice_servers: list[RTCIceServer],
        source: MediaStreamTrack | None,
        sink: AudioSink | None,
        *,
        add_source: bool = True,
    ) -> RTCPeerConnection:
        async def failed() -> None:
            await self._end(call, "failed", notify=("hangup", {"reason": "failed"}, False))

        return call.open_connection(ice_servers, source, sink, on_failed=failed, add_source=add_source)

    # -- timers and ending -------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _cancel_timer(self, call: Call) -> None:
        if call.timer is not None and call.timer is not asyncio.current_task():
            call.timer.cancel()
        call.timer = None

    async def _ring_timer(self, call: Call) -> None:
        await asyncio.sleep(self.offline_timeout)
        if offline_after_wait(call.state, call.rang):
            await self._end(call, "offline", notify=("hangup", {"reason": "offline"}, True))
            return
        await asyncio.sleep(max(0.0, self.ring_timeout - self.offline_timeout))
        if call.state is CallState.RINGING:
            await self._end(call, "no_answer", notify=("hangup", {"reason": "no_answer"}, True))

    async def _missed_timer(self, call: Call) -> None:
        await asyncio.sleep(self.ring_timeout)
        if call.state is CallState.RINGING:
            await self._end(call, "missed")

    async def _end(self, call: Call, reason: str, notify: Notify | None = None) -> None:
        if call.state is CallState.ENDED or call.ending:
            return
        call.ending = True
        self._cancel_timer(call)
        if self.record_missed and records_missed(outgoing=call.outgoing, reason=reason):
            await self._record_missed(call)  # before "ended", so whoever waits for it finds the record
        call.move_to(CallState.ENDED, reason)
        if notify is not None:
            action, data, all_devices = notify
            with contextlib.suppress(MeloError):
                await self._signal(call, action, data, all_devices=all_devices)
        if call.source is not None:
            call.source.stop()
        if call.sink is not None:
            await call.sink.stop()
        if call.pc is not None:
            with contextlib.suppress(Exception):
                await call.pc.close()

    async def _record_missed(self, call: Call) -> None:
        try:
            chat_id = call.chat_id
            if chat_id is None:
                for chat in await self.messenger.client.list_chats():
                    if chat.kind == "direct" and chat.peer is not None and chat.peer.username == call.peer:
                        chat_id = chat.id
                        break
            if chat_id is None:
                log.info("missed call %s: no direct chat with %s to record it in", call.call_id[:8], call.peer)
                return
            call.chat_id = chat_id
            at = datetime.fromtimestamp(call.ended_at or time.time(), UTC).replace(microsecond=0)
            await self.messenger.client.record_missed_call(chat_id, call.call_id, at)
        except MeloError as exc:
            log.info("could not record the missed call %s: %s", call.call_id[:8], exc)
