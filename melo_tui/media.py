"""What the app needs of the machine: audio devices for calls, and desktop notifications."""

import asyncio
import shutil
from collections.abc import Awaitable, Callable

from aiortc.mediastreams import MediaStreamTrack

from melo_protocol.client.call_media import AudioSink, Blackhole, SilenceTrack, open_microphone, open_speaker

CallMedia = Callable[[], tuple[MediaStreamTrack, AudioSink, list[str]]]
Notifier = Callable[[str, str], Awaitable[None]]  # (title, body) → a desktop notification


def device_media() -> tuple[MediaStreamTrack, AudioSink, list[str]]:
    """The system microphone and speaker; silence or a blackhole (and a notice) where there is none."""
    source, mic_notice = open_microphone()
    sink, speaker_notice = open_speaker()
    return source, sink, [n for n in (mic_notice, speaker_notice) if n]


def quiet_media() -> tuple[MediaStreamTrack, AudioSink, list[str]]:
    """Silence out, received audio discarded (tests, and machines without audio)."""
    return SilenceTrack(), Blackhole(), []


def desktop_notifier() -> Notifier | None:
    """Desktop notifications through ``notify-send`` (freedesktop), or None where there is none.

    Only the chat's name and the sender go to it, never message text: argv is visible to every local
    user, and the text of an end-to-end encrypted chat must not leave the app.
    """
    exe = shutil.which("notify-send")
    if exe is None:
        return None

    async def send(title: str, body: str) -> None:
        quiet = asyncio.subprocess.DEVNULL
        proc = await asyncio.create_subprocess_exec(
            exe, "--app-name=Melo", title, body, stdin=quiet, stdout=quiet, stderr=quiet
        )
        await proc.wait()

    return send
