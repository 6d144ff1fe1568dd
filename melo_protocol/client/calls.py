"""Audio calls over the Messenger: aiortc peer connections, signalled end-to-end encrypted.

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

``Call.state`` is a ``CallState``; when ``ended``, ``Call.reason`` is one of ``END_REASONS``.
``Call.notices`` lists things the user should know (no microphone: sending silence, …).
``Call.level`` (0..1) is the RMS level of the audio last received (for a level meter).
One call per device: a second incoming invite is answered ``busy``. Calling an unknown user raises
``NotFound`` (``user_not_found``). A callee with no device online (presence, from the chat list) ends
the call at once as ``offline``, without ringing; an unanswered outgoing call (``no_answer`` after the
ring timeout, or ``offline`` when no device of the callee rang) is recorded as a ``call.missed`` event
in the DM (``POST /v1/chats/{id}/calls/missed``, metadata only).

Media: sources ``ToneTrack(hz)``, ``SilenceTrack()``, ``open_file(path)``, ``open_microphone()``;
sinks ``WavRecorder(path)``, ``Blackhole()``, ``open_speaker()``. A missing audio device never fails a
call: the opener falls back to silence (or a blackhole) and says so. Probing a device keeps the C
libraries' complaints (ALSA's "cannot find card …") off stderr; tone, file and WAV media probe nothing.
"""

import asyncio
import contextlib
import fractions
import logging
import math
import os
import sys
import time
import uuid
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from melo_protocol.client import events as ev
from melo_protocol.client.errors import MeloError, NotFound
from melo_protocol.wire import ErrorCode

log = logging.getLogger("melo.calls")

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms, Opus' usual packet
RING_TIMEOUT_S = 45.0
OFFLINE_TIMEOUT_S = 15.0  # no device of the callee said "ringing" by then: they are offline
ACTIONS = ("invite", "ringing", "answer", "reject", "busy", "hangup")
END_REASONS = ("hangup", "remote_hangup", "rejected", "busy", "no_answer", "offline", "missed",
               "answered_elsewhere", "failed", "unreachable")


class CallError(MeloError):
    """A call could not be placed or driven (another call is active, the callee is unreachable, …)."""


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


# -- media sources ------------------------------------------------------------------------------------
class PacedAudioTrack(MediaStreamTrack):
    """An audio source producing 20 ms mono s16 frames at 48 kHz in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pts = 0
        self._start: float | None = None

    async def _next_pts(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME_SAMPLES
            wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # pacing: one frame per 20 ms of wall clock
        return self._pts

    def _frame(self, samples: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame

    def samples(self, pts: int) -> np.ndarray:
        return np.zeros(FRAME_SAMPLES, dtype=np.int16)

    async def recv(self) -> av.AudioFrame:
        pts = await self._next_pts()
        return self._frame(self.samples(pts))


class SilenceTrack(PacedAudioTrack):
    """Silence, for receive-only calls."""


class ToneTrack(PacedAudioTrack):
    """A sine at ``hz``. ``enabled`` switches it on and off (off: silence); ``onsets`` are the
    ``time.monotonic()`` instants at which a frame starting a burst was handed to the encoder."""

    def __init__(self, hz: float, amplitude: float = 0.3, *, enabled: bool = True) -> None:
        super().__init__()
        self.hz = hz
        self.amplitude = amplitude
        self.enabled = enabled
        self.onsets: list[float] = []
        self._was_on = False

    def samples(self, pts: int) -> np.ndarray:
        if not self.enabled:
            self._was_on = False
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)
        if not self._was_on:
            self.onsets.append(time.monotonic())
            self._was_on = True
        t = (pts + np.arange(FRAME_SAMPLES)) / SAMPLE_RATE
        return (np.sin(2 * math.pi * self.hz * t) * self.amplitude * 32767).astype(np.int16)


class MutableTrack(MediaStreamTrack):
    """Wraps a source; while ``muted`` its frames are sent as silence (timing kept)."""

    kind = "audio"

    def __init__(self, inner: MediaStreamTrack) -> None:
        super().__init__()
        self.inner = inner
        self.muted = False

    async def recv(self) -> Any:
        frame = await self.inner.recv()
        if self.muted and isinstance(frame, av.AudioFrame):
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
        return frame

    def stop(self) -> None:
        super().stop()
        self.inner.stop()


def open_file(path: str | Path) -> MediaStreamTrack:
    """The audio of a wav, ogg or mp3 file (aiortc MediaPlayer, played in real time)."""
    from aiortc.contrib.media import MediaPlayer

    try:
        player = MediaPlayer(str(path))
    except (OSError, av.FFmpegError) as exc:
        raise CallError(f"cannot play {path}: {exc}") from None
    if player.audio is None:
        raise CallError(f"{path} has no audio")
    return player.audio


@contextlib.contextmanager
def quiet_c_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null meanwhile: libasound (inside PyAV) prints its errors there
    itself, past Python's sys.stderr. For short synchronous device probes only."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 (a detached process): nothing to keep quiet
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def open_microphone() -> tuple[MediaStreamTrack, str | None]:
    """(track, notice): the system microphone via PulseAudio or ALSA; silence and a notice when absent."""
    from aiortc.contrib.media import MediaPlayer

    for fmt in ("pulse", "alsa"):
        try:
            with quiet_c_stderr():
                player = MediaPlayer("default", format=fmt)
        except Exception as exc:  # any device or driver failure means "no microphone"
            log.debug("no %s microphone: %s", fmt, exc)
            continue
        if player.audio is not None:
            return player.audio, None
    return SilenceTrack(), "no microphone found (pulse/alsa): sending silence"


# -- media sinks --------------------------------------------------------------------------------------
class AudioSink(Protocol):
    level: float

    def start(self, track: MediaStreamTrack) -> None: ...

    async def stop(self) -> None: ...


class Blackhole:
    """Consumes the received audio (so the receiver keeps going) and keeps its level."""

    def __init__(self, on_samples: Callable[[np.ndarray, float], None] | None = None) -> None:
        self.level = 0.0
        self.samples_received = 0
        self.on_samples = on_samples
        self._task: asyncio.Task[None] | None = None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._progress = asyncio.Event()

    def start(self, track: MediaStreamTrack) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                for out in self._resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1).astype(np.int16)
                    self.samples_received += len(samples)
                    if len(samples):
                        self.level = float(np.sqrt(np.mean((samples / 32768.0) ** 2)))
                    self.write(samples)
                    if self.on_samples is not None:
                        self.on_samples(samples, now)
                self._progress.set()
                self._progress = asyncio.Event()

    def write(self, samples: np.ndarray) -> None:
        pass

    async def wait_seconds(self, seconds: float, timeout: float) -> None:
        """Until this much audio has arrived (raises TimeoutError otherwise)."""
        async with asyncio.timeout(timeout):
            while self.samples_received < seconds * SAMPLE_RATE:
                await self._progress.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.close()

    def close(self) -> None:
        pass


class WavRecorder(Blackhole):
    """Writes the received audio to a 48 kHz mono 16-bit WAV file."""

    def __init__(self, path: str | Path, on_samples: Callable[[np.ndarray, float], None] | None = None) -> None:
        super().__init__(on_samples)
        self.path = Path(path)
        self._wav: Any = wave.open(str(self.path), "wb")  # closed in close()
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)

    def write(self, samples: np.ndarray) -> None:
        if self._wav is not None:
            self._wav.writeframes(samples.astype("<i2").tobytes())

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None


class SpeakerSink(Blackhole):
    """Plays the received audio on the system speaker (aiortc MediaRecorder on pulse/alsa)."""

    def __init__(self, recorder: Any) -> None:
        super().__init__()
        self._recorder = recorder

    def start(self, track: MediaStreamTrack) -> None:
        self._recorder.addTrack(track)
        self._task = asyncio.get_running_loop().create_task(self._recorder.start())

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._recorder.stop()


def _open_output_device(fmt: str) -> None:
    """Open the system's output device for real, then close it: PyAV opens an ALSA device only when the
    first header is written, so a missing one would otherwise fail later, mid-call, on stderr."""
    container = av.open("default", format=fmt, mode="w")
    try:
        container.add_stream("pcm_s16le", rate=SAMPLE_RATE)
        container.start_encoding()
    finally:
        with contextlib.suppress(Exception):
            container.close()


def open_speaker() -> tuple[AudioSink, str | None]:
    """(sink, notice): the system speaker; a blackhole and a notice when there is none."""
    from aiortc.contrib.media import MediaRecorder

    for fmt in ("pulse", "alsa"):
        try:
            with quiet_c_stderr():
                _open_output_device(fmt)
                return SpeakerSink(MediaRecorder("default", format=fmt)), None
        except Exception as exc:  # any device or driver failure means "no speaker"
            log.debug("no %s speaker: %s", fmt, exc)
    return Blackhole(), "no speaker found (pulse/alsa): received audio is discarded"


def dominant_frequency(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """The frequency (Hz) of the strongest FFT bin, for tone checks."""
    x = samples.astype(np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(freqs[int(np.argmax(spectrum))])


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels())[:, 0]
        return data, w.getframerate()


# -- calls --------------------------------------------------------------------------------------------
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
        self._listeners: list[Callable[[Call], Any]] = []
        self._changed = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._ending = False

    def __repr__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"<Call {self.call_id[:8]} {self.direction} {self.peer} {self.state}{reason}>"

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

    def _set(self, state: CallState, reason: str | None = None) -> None:
        if self.state is CallState.ENDED or self.state is state:
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


def _description(data: dict[str, Any], expected: str) -> RTCSessionDescription:
    sdp, kind = data.get("sdp"), data.get("type")
    if not isinstance(sdp, str) or kind != expected:
        raise CallError(f"malformed {expected}")
    return RTCSessionDescription(sdp=sdp, type=expected)


class CallManager:
    """Places and answers calls for one Messenger (one device). See the module docstring."""

    def __init__(self, messenger: Any, *, ring_timeout: float = RING_TIMEOUT_S,
                 offline_timeout: float = OFFLINE_TIMEOUT_S, ice_servers: list[RTCIceServer] | None = None,
                 record_missed: bool = True) -> None:
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

    async def start(self, username: str, *,
                    source: MediaStreamTrack | Callable[[], MediaStreamTrack] | None = None,
                    sink: AudioSink | Callable[[], AudioSink] | None = None, chat_id: int | None = None) -> Call:
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
            pc = await self._peer_connection(call, source, sink)
            await pc.setLocalDescription(await pc.createOffer())
            await self._gathered(pc)
            await self._signal(call, "invite", {"sdp": pc.localDescription.sdp, "type": "offer",
                                                "expires_at": time.time() + self.ring_timeout}, all_devices=True)
        except MeloError as exc:
            await self._end(call, "unreachable")
            raise CallError(f"cannot call {username}: {exc.message}") from None
        call._timer = self._spawn(self._ring_timer(call))
        return call

    async def accept(self, call: Call, *, source: MediaStreamTrack | None = None,
                     sink: AudioSink | None = None) -> None:
        """Answer an incoming call (complete SDP answer to the inviting device)."""
        if call.direction != "incoming" or call.state is not CallState.RINGING or call.offer is None:
            raise CallError(f"call {call.call_id[:8]} cannot be accepted ({call.state})")
        self._cancel_timer(call)
        call._set(CallState.CONNECTING)
        try:
            pc = await self._peer_connection(call, source, sink, add_source=False)
            await pc.setRemoteDescription(_description(call.offer, "offer"))
            assert call.source is not None
            pc.addTrack(call.source)
            await pc.setLocalDescription(await pc.createAnswer())
            await self._gathered(pc)
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
        unanswered = call.direction == "outgoing" and call.peer_device is None
        await self._end(call, "hangup", notify=("hangup", {"reason": "hangup"}, unanswered))

    async def mute(self, call: Call, on: bool = True) -> None:
        if call.source is not None:
            call.source.muted = on

    async def handle(self, event: ev.Event) -> Call | None:
        """Feed every ``events.CallSignal`` from ``Messenger.events()`` here; returns the call it concerned."""
        if not isinstance(event, ev.CallSignal) or event.action not in ACTIONS or not event.call_id:
            return None
        if event.user == self.messenger.username and event.device_id == self.messenger.device_id:
            return None
        if event.action == "invite":
            return await self._on_invite(event)
        call = self.calls.get(event.call_id)
        if call is None or call.peer != event.user or call.state is CallState.ENDED or call._ending:
            return None
        if call.peer_device is not None and event.device_id != call.peer_device:
            return None  # once answered, only the answering device speaks for the callee
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
        if event.call_id in self.calls:
            return None
        expires = event.data.get("expires_at")
        if isinstance(expires, int | float) and expires < time.time():
            return None  # a stale invite from the queue of an offline device
        if self.active is not None:
            with contextlib.suppress(MeloError):
                await self.messenger.send_call_signal(event.user, "busy", {"call_id": event.call_id},
                                                      device_id=event.device_id)
            return None
        call = Call(event.call_id, event.user, "incoming", event.device_id)
        call.offer = {"sdp": str(event.data.get("sdp", "")), "type": str(event.data.get("type", ""))}
        self.calls[call.call_id] = call
        with contextlib.suppress(MeloError):
            await self._signal(call, "ringing", {})
        call._timer = self._spawn(self._missed_timer(call))
        for callback in list(self._incoming_listeners):
            try:
                callback(call)
            except Exception:
                log.exception("incoming call callback failed")
        self.incoming.put_nowait(call)
        return call

    async def _dispatch(self, call: Call, event: ev.CallSignal) -> None:
        action = event.action
        outgoing = call.direction == "outgoing"
        if action == "ringing" and outgoing:
            call.rang = True
        elif action == "answer" and outgoing and call.state is CallState.RINGING:
            assert call.pc is not None
            call.peer_device = event.device_id
            self._cancel_timer(call)
            call._set(CallState.CONNECTING)
            await call.pc.setRemoteDescription(_description(event.data, "answer"))
            # the callee's other devices stop ringing
            self._spawn(self._signal(call, "hangup", {"reason": "answered_elsewhere",
                                                      "answered_by": event.device_id}, all_devices=True))
        elif action == "reject" and outgoing and call.state is CallState.RINGING:
            await self._end(call, "rejected")
        elif action == "busy" and outgoing and call.state is CallState.RINGING:
            await self._end(call, "busy")
        elif action == "hangup":
            reason = str(event.data.get("reason", ""))
            if not outgoing and call.state is CallState.RINGING:
                await self._end(call, "answered_elsewhere" if reason == "answered_elsewhere" else "missed")
            elif reason != "answered_elsewhere":
                await self._end(call, "remote_hangup")

    async def _signal(self, call: Call, action: str, data: dict[str, Any], *, all_devices: bool = False) -> None:
        await self.messenger.send_call_signal(call.peer, action, {"call_id": call.call_id, "version": 1, **data},
                                              device_id=None if all_devices else call.peer_device)

    # -- media and connection ----------------------------------------------------------------------
    async def _ice(self) -> list[RTCIceServer]:
        if self._ice_fixed is not None:
            return self._ice_fixed
        if self._ice_fetched_at is not None and time.monotonic() - self._ice_fetched_at < 3600:
            return self._ice_servers  # TURN credentials live a day; fetched again hourly
        servers: list[RTCIceServer] = []
        try:
            for item in (await self.messenger.client.ice_servers()).ice_servers:
                servers.append(RTCIceServer(urls=list(item.urls), username=item.username, credential=item.credential))
        except MeloError as exc:
            log.info("no ICE servers from the server (%s): host candidates only", exc)
        self._ice_servers, self._ice_fetched_at = servers, time.monotonic()
        return servers

    async def _peer_connection(self, call: Call, source: MediaStreamTrack | None, sink: AudioSink | None, *,
                               add_source: bool = True) -> RTCPeerConnection:
        # an explicit (possibly empty) list: aiortc would otherwise reach for a public STUN server
        pc = RTCPeerConnection(RTCConfiguration(iceServers=await self._ice()))
        call.pc = pc
        call.source = MutableTrack(source if source is not None else SilenceTrack())
        call.sink = sink if sink is not None else Blackhole()
        if add_source:
            pc.addTrack(call.source)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and call.sink is not None:
                call.sink.start(track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                call._set(CallState.CONNECTED)
            elif pc.connectionState == "failed" and call.state is not CallState.ENDED:
                await self._end(call, "failed", notify=("hangup", {"reason": "failed"}, False))

        return pc

    @staticmethod
    async def _gathered(pc: RTCPeerConnection) -> None:
        """aiortc gathers during setLocalDescription; wait for 'complete' in case it has not finished."""
        if pc.iceGatheringState == "complete":
            return
        done = asyncio.Event()
        pc.on("icegatheringstatechange", lambda: done.set() if pc.iceGatheringState == "complete" else None)
        async with asyncio.timeout(30):
            while pc.iceGatheringState != "complete":
                await done.wait()

    # -- timers and ending -------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _cancel_timer(self, call: Call) -> None:
        if call._timer is not None and call._timer is not asyncio.current_task():
            call._timer.cancel()
        call._timer = None

    async def _ring_timer(self, call: Call) -> None:
        await asyncio.sleep(self.offline_timeout)
        if call.state is CallState.RINGING and not call.rang:
            await self._end(call, "offline", notify=("hangup", {"reason": "offline"}, True))
            return
        await asyncio.sleep(max(0.0, self.ring_timeout - self.offline_timeout))
        if call.state is CallState.RINGING:
            await self._end(call, "no_answer", notify=("hangup", {"reason": "no_answer"}, True))

    async def _missed_timer(self, call: Call) -> None:
        await asyncio.sleep(self.ring_timeout)
        if call.state is CallState.RINGING:
            await self._end(call, "missed")

    async def _end(self, call: Call, reason: str,
                   notify: tuple[str, dict[str, Any], bool] | None = None) -> None:
        if call.state is CallState.ENDED or call._ending:
            return
        call._ending = True
        self._cancel_timer(call)
        if call.direction == "outgoing" and reason in ("no_answer", "offline") and self.record_missed:
            await self._record_missed(call)  # before "ended", so whoever waits for it finds the record
        call._set(CallState.ENDED, reason)
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
