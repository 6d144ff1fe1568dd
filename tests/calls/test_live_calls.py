"""Calls between two SDK clients through the live server on loopback: audio, hang-up, reject, busy."""

import asyncio
import time
from pathlib import Path

from melo_protocol.client.call_media import SilenceTrack, ToneTrack, WavRecorder, dominant_frequency, read_wav
from melo_protocol.client.call_state import CallState
from tests.kit.callkit import pair
from tests.kit.livekit import Live


async def _call_with_tone(caller, callee, hz: float, wav: Path) -> float:
    """caller sends a tone, callee records; returns the dominant frequency of the recording."""
    call = await caller.calls.start(callee.username, source=ToneTrack(hz), sink=None)
    async with asyncio.timeout(15):
        incoming = await callee.calls.incoming.get()
    assert incoming.call_id == call.call_id and incoming.peer == caller.username
    assert incoming.state is CallState.RINGING
    recorder = WavRecorder(wav)
    await callee.calls.accept(incoming, source=SilenceTrack(), sink=recorder)
    assert await call.wait_for(CallState.CONNECTED, timeout=15) is CallState.CONNECTED
    assert await incoming.wait_for(CallState.CONNECTED, timeout=15) is CallState.CONNECTED
    await recorder.wait_seconds(1.5, timeout=15)
    quality = await call.quality()
    assert quality.packets_lost >= 0
    started = time.monotonic()
    await caller.calls.hang_up(call)
    await incoming.wait_for(CallState.ENDED, timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert (call.state, call.reason) == (CallState.ENDED, "hangup")
    assert (incoming.state, incoming.reason) == (CallState.ENDED, "remote_hangup")
    samples, rate = read_wav(wav)
    assert len(samples) >= 1.5 * rate
    return dominant_frequency(samples[int(0.3 * rate):], rate)


async def test_tone_both_ways_and_hang_up(live: Live, tmp_path: Path) -> None:
    alice, bob, _ = await pair(live, tmp_path)
    try:
        assert abs(await _call_with_tone(alice, bob, 440, tmp_path / "bob.wav") - 440) <= 10
        assert alice.calls.active is None and bob.calls.active is None
        assert abs(await _call_with_tone(bob, alice, 660, tmp_path / "alice.wav") - 660) <= 10
    finally:
        await alice.close()
        await bob.close()


async def test_reject(live: Live, tmp_path: Path) -> None:
    alice, bob, _ = await pair(live, tmp_path)
    try:
        call = await alice.calls.start(bob.username)
        async with asyncio.timeout(15):
            incoming = await bob.calls.incoming.get()
        await alice.signal(lambda s: s.action == "ringing" and s.call_id == call.call_id)
        assert call.rang and call.state is CallState.RINGING
        await bob.calls.reject(incoming)
        assert await call.wait_for(CallState.CONNECTED, timeout=10) is CallState.ENDED
        assert call.reason == "rejected" and incoming.reason == "rejected"
        assert call.connected_at is None
    finally:
        await alice.close()
        await bob.close()


async def test_second_incoming_call_gets_busy(live: Live, tmp_path: Path) -> None:
    alice, bob, _ = await pair(live, tmp_path)
    from tests.kit.callkit import Party
    from tests.kit.e2ekit import device

    carol_m = await device(live, tmp_path, "carol" + tmp_path.name[-6:].replace("_", ""), "c1", register=True)
    await carol_m.client.create_direct(bob.username)
    carol = Party(carol_m)
    try:
        first = await alice.calls.start(bob.username)
        async with asyncio.timeout(15):
            ringing = await bob.calls.incoming.get()
        assert ringing.call_id == first.call_id
        second = await carol.calls.start(bob.username)
        assert await second.wait_for(CallState.CONNECTED, timeout=10) is CallState.ENDED
        assert second.reason == "busy"
        assert bob.calls.active is ringing and bob.calls.incoming.empty()
        assert first.state is CallState.RINGING
    finally:
        await alice.close()
        await bob.close()
        await carol.close()
