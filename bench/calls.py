"""Calls: CPU per side of an audio call and mouth-to-ear delay measured with tone bursts.

Both sides are real CallManagers and aiortc peer connections (Opus, DTLS-SRTP, ICE on this host) in one
process; signalling is passed in memory, since the server only relays it and takes no part in media.
CPU per side is the process CPU over the call divided by two. Mouth-to-ear: the caller's tone track
switches a 440 Hz burst on once a second; the delay is from the instant the burst's first frame is
handed to the encoder to the arrival of the first received frame whose level crosses a threshold.

    python -m bench.calls [seconds]    (default 20 s, not 60 s, to keep `make bench` short)
    python -m bench calls              (as part of `make bench`: the default length)
"""

import asyncio
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from melo_protocol.client import events as ev
from melo_protocol.client.call_manager import CallManager
from melo_protocol.client.call_media import Blackhole, SilenceTrack, ToneTrack
from melo_protocol.client.call_state import CallState

AIM_CPU = 5.0  # % of one core per side
AIM_DELAY_MS = 150.0


class _LoopbackClient:
    """The REST calls a CallManager makes: the DM with the peer, who is online."""

    def __init__(self, owner: "_Loopback") -> None:
        self.owner = owner

    async def list_chats(self) -> list[Any]:
        peer = self.owner.peer
        assert peer is not None
        return [SimpleNamespace(id=1, kind="direct", peer=SimpleNamespace(username=peer.username, online=True))]


class _Loopback:
    """The part of Messenger a CallManager uses, with signals delivered in memory."""

    def __init__(self, username: str) -> None:
        self.username = username
        self.device_id = "D" + username.upper()
        self.peer: _Loopback | None = None
        self.manager: CallManager | None = None
        self.client = _LoopbackClient(self)

    async def send_call_signal(
        self, username: str, action: str, data: dict[str, Any], device_id: str | None = None
    ) -> None:
        peer = self.peer
        assert peer is not None and peer.manager is not None
        signal = ev.CallSignal(
            user=self.username, device_id=self.device_id, call_id=str(data["call_id"]), action=action, data=data
        )
        asyncio.get_running_loop().create_task(peer.manager.handle(signal))


async def run(seconds: float) -> dict[str, float]:
    a, b = _Loopback("alice"), _Loopback("bob")
    a.peer, b.peer = b, a
    a.manager = CallManager(a, ice_servers=[], record_missed=False)
    b.manager = CallManager(b, ice_servers=[], record_missed=False)
    tone = ToneTrack(440, enabled=False)
    arrivals: list[float] = []
    state = {"above": False}

    def on_samples(samples: np.ndarray, at: float) -> None:
        level = np.abs(samples.astype(np.int32))
        loud = np.nonzero(level > 3000)[0]
        if len(loud) and not state["above"]:
            state["above"] = True
            # the frame arrived at `at` holding audio up to its end; the onset is loud[0] samples in
            arrivals.append(at - (len(samples) - int(loud[0])) / 48_000)
        elif not len(loud):
            state["above"] = False

    call = await a.manager.start("bob", source=tone, sink=Blackhole())
    incoming = await b.manager.incoming.get()
    await b.manager.accept(incoming, source=SilenceTrack(), sink=Blackhole(on_samples))
    await call.wait_for(CallState.CONNECTED, timeout=30)
    await incoming.wait_for(CallState.CONNECTED, timeout=30)
    cpu0, wall0 = time.process_time(), time.monotonic()
    end = wall0 + seconds
    while time.monotonic() < end:
        tone.enabled = True
        await asyncio.sleep(0.2)
        tone.enabled = False
        await asyncio.sleep(0.8)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    quality = await call.quality()
    await a.manager.hang_up(call)
    await incoming.wait_for(CallState.ENDED, timeout=5)
    delays = []
    for onset in tone.onsets:
        after = [t for t in arrivals if t >= onset]
        if after and after[0] - onset < 0.9:
            delays.append((after[0] - onset) * 1000)
    return {
        "seconds": wall,
        "cpu_per_side": cpu / wall / 2 * 100,
        "delay_median": statistics.median(delays),
        "delay_p95": sorted(delays)[int(0.95 * (len(delays) - 1))],
        "bursts": len(delays),
        "rtt_ms": quality.rtt_ms or float("nan"),
    }


DEFAULT_SECONDS = 20.0


def main(seconds: float | None = None) -> None:
    """``bench/__main__`` calls this with no argument: sys.argv there names benchmarks, not a length."""
    seconds = DEFAULT_SECONDS if seconds is None else seconds
    r = asyncio.run(run(seconds))
    note = "" if seconds >= 60 else f" ({seconds:.0f} s call instead of 60 s, to keep the bench short)"
    print(f"calls: one Opus audio call on loopback, both sides in one process{note}")
    print(f"{'figure':<34}{'measured':>12}{'aim':>12}")
    print(f"{'CPU per side (% of a core)':<34}{r['cpu_per_side']:>12.1f}{'<= ' + str(AIM_CPU):>12}")
    print(f"{'mouth-to-ear, median (ms)':<34}{r['delay_median']:>12.1f}{'<= ' + str(AIM_DELAY_MS):>12}")
    print(f"{'mouth-to-ear, p95 (ms)':<34}{r['delay_p95']:>12.1f}{'<= ' + str(AIM_DELAY_MS):>12}")
    print(f"{'bursts detected':<34}{r['bursts']:>12d}")
    print(f"{'RTT from RTCP (ms)':<34}{r['rtt_ms']:>12.1f}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else None)
