"""`melo call USER --tone 440 --duration 3` to a `melo call answer --record out.wav` peer: the file peaks at 440 Hz."""

import asyncio
import json
import os
from pathlib import Path

from melo_protocol.client.call_media import dominant_frequency, read_wav
from tests.cli.conftest import PASSWORD, melo_command
from tests.kit.livekit import Live


def _env(home: Path, server: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    env.update({"MELO_HOME": str(home), "MELO_KEYRING": "file", "NO_COLOR": "1", "MELO_SERVER": server})
    return env


async def _run(home: Path, server: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*melo_command(), *args, env=_env(home, server),
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def _dm_pair(tmp_path: Path, server: str) -> tuple[str, str]:
    """Two registered CLI users (homes under tmp_path) with a DM between them, so they may call."""
    tag = tmp_path.name[-6:].replace("_", "")
    a, b = f"clia{tag}", f"clib{tag}"
    for name in (a, b):
        code, _, err = await _run(tmp_path / name, server, "register", name, "--password-stdin", stdin=PASSWORD + "\n")
        assert code == 0, err
    code, _, err = await _run(tmp_path / a, server, "send", f"@{b}", "calling you")
    assert code == 0, err
    return a, b


async def test_cli_tone_call_is_recorded_by_an_answering_peer(live: Live, tmp_path: Path) -> None:
    server = live.server.url
    a, b = await _dm_pair(tmp_path, server)
    wav = tmp_path / "out.wav"
    answer = await asyncio.create_subprocess_exec(
        *melo_command(), "call", "answer", "--record", str(wav), "--timeout", "40", "--json",
        env=_env(tmp_path / b, server), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert answer.stderr is not None
    async with asyncio.timeout(30):
        while b"waiting for a call" not in (line := await answer.stderr.readline()):
            assert line, "melo call answer exited early"
    code, out, err = await _run(tmp_path / a, server, "call", b, "--tone", "440", "--duration", "3", "--json")
    assert code == 0, err
    assert '"state": "connected"' in out and '"reason": "hangup"' in out
    assert "ALSA" not in err  # --tone probes no microphone; the speaker probe (none here) keeps quiet
    stdout, answer_err = await asyncio.wait_for(answer.communicate(), 30)
    assert answer.returncode == 0
    assert '"reason": "remote_hangup"' in stdout.decode()
    assert "ALSA" not in answer_err.decode()  # --record probes no speaker; the microphone probe keeps quiet
    samples, rate = read_wav(wav)
    assert len(samples) >= 2 * rate
    assert abs(dominant_frequency(samples[int(0.3 * rate):], rate) - 440) <= 10


async def test_cli_call_to_nobody_or_to_someone_offline_ends_at_once(live: Live, tmp_path: Path) -> None:
    server = live.server.url
    a, b = await _dm_pair(tmp_path, server)
    code, out, err = await _run(tmp_path / a, server, "call", f"nobody{a}", "--tone", "440")
    assert code == 1 and out == ""
    assert err.strip() == f"melo: error: no such user: nobody{a}"
    # b has no device online: the call ends before it rings (no ring timer decides it)
    code, out, err = await _run(tmp_path / a, server, "call", b, "--tone", "440", "--json")
    assert code == 1
    states = [json.loads(line) for line in out.splitlines()]
    assert [(s["state"], s["reason"]) for s in states] == [("ended", "offline")]
    assert "ALSA" not in err
    code, out, err = await _run(tmp_path / a, server, "call", b, "--tone", "440")
    assert code == 1 and f"offline: no device of {b} is online" in err and "ALSA" not in err
