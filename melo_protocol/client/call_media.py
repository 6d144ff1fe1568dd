"""Call media: the audio a call sends and what it does with the audio it receives (aiortc tracks).

Sources ``ToneTrack(hz)``, ``SilenceTrack()``, ``open_file(path)``, ``open_microphone()``; sinks
``WavRecorder(path)``, ``Blackhole()``, ``open_speaker()``. A missing audio device never fails a call: the
opener falls back to silence (or a blackhole) and says so. Probing a device keeps the C libraries'
complaints (ALSA's "cannot find card …") off stderr; tone, file and WAV media probe nothing.
``dominant_frequency`` and ``read_wav`` are for checking what arrived (tests, the bench).
"""

import asyncio
import contextlib
import fractions
import logging
import math
import os
import sys
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from melo_protocol.client.errors import CallError

log = logging.getLogger("melo.calls")

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms, Opus' usual packet


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
