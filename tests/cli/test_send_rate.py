"""Scripts that send a lot: `melo send` in a shell loop under the default per-user rate limit.

A repeated send costs one request (the DM, its members' devices and the tokens are remembered); a
429 with a short Retry-After is waited out (said on stderr) and the send retried with the same
transaction id. These run their own server: default limits, and an access log to count requests by.
"""

import asyncio
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from melo_protocol.client import CredentialStore, MeloClient, RateLimited
from melo_protocol.client.messenger import Messenger
from tests.cli.conftest import Melo, melo_command, new_username
from tests.live import LiveServer, running_server

SENDS = 300
SEND_PATH = "/v1/chats/{chat_id}/messages"


def access_log(server: LiveServer) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    return [doc for doc in lines if doc.get("logger") == "melo.access"]


async def received_texts(server: LiveServer, home: Path, peer: str) -> list[str]:
    """Every message of the DM with ``peer`` as the recipient's device decrypts it, oldest first."""
    store = CredentialStore(home, "default")
    m = Messenger.open(MeloClient(server.url, store=store), store)
    await m.start(live=False)
    try:
        await m.receive_pending_to_device()
        chat_id = await m.direct_chat_id(peer)
        messages, before = [], None
        while page := await m.history(chat_id, before=before, limit=200):
            messages = page + messages
            before = page[0].seq
        assert all(msg.status == "ok" for msg in messages)
        return [msg.text or "" for msg in messages]
    finally:
        await m.close()
        await m.client.aclose()


@pytest.mark.timeout(3600)  # 300 fresh processes on a loaded 2-core box
async def test_a_shell_loop_sends_300_messages_under_the_default_limit(tmp_path: Path) -> None:
    env = {"MELO_RATE_USER": "600/minute", "MELO_LOG_LEVEL": "info"}  # the defaults, not the tests' generous ones
    with running_server(tmp_path / "srv", env) as server:
        alice, bob = Melo(tmp_path / "alice", server.url), Melo(tmp_path / "bob", server.url)
        alice_name, bob_name = new_username("loopa"), new_username("loopb")
        alice.register(alice_name)
        bob.register(bob_name)
        before = len(access_log(server))
        script = 'for i in $(seq 1 "$SENDS"); do "$@" send "@$PEER" "message $i" >/dev/null || exit; done'
        loop = await asyncio.to_thread(
            subprocess.run, ["bash", "-c", script, "loop", *melo_command()],
            env={**alice.env(), "PEER": bob_name, "SENDS": str(SENDS)},
            capture_output=True, text=True, timeout=3500, check=False,
        )
        assert loop.returncode == 0, loop.stderr
        assert "rate limited" not in loop.stderr  # 300 one-request sends stay far below 600 a minute
        requests = access_log(server)[before:]
        texts = await received_texts(server, tmp_path / "bob", alice_name)
    assert texts == [f"message {i}" for i in range(1, SENDS + 1)]  # all of them, once each, in order
    sends = [r for r in requests if r["method"] == "POST" and r["path"] == SEND_PATH]
    assert len(sends) == SENDS and {r["status"] for r in sends} == {201}
    others = Counter(f"{r['method']} {r['path']}" for r in requests if r not in sends)
    # the first send looks up the DM and bob's devices and shares the room key; later ones only check
    # the key count every few minutes (and refresh the access token when it expires)
    assert sum(others.values()) <= 15, others


async def test_a_short_rate_limit_is_waited_out_and_a_long_one_is_not(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", {"MELO_RATE_USER": "8/20seconds"}) as server:
        names = {who: new_username(f"rate{who[0]}") for who in ("alice", "bob", "carol")}
        melos = {who: Melo(tmp_path / who, server.url) for who in names}
        for who, name in names.items():
            melos[who].register(name)

        async def use_up_the_window(who: str) -> float:
            """A burst of the user's other requests fills their (empty) window; the Retry-After then."""
            store = CredentialStore(melos[who].home, "default", warn=lambda _m: None)
            async with MeloClient(server.url, store=store, rate_limit_wait=0) as c:
                while True:
                    try:
                        await c.whoami()
                    except RateLimited as exc:
                        assert exc.retry_after is not None
                        return exc.retry_after

        assert await use_up_the_window("alice") > 10  # a burst: the window stays full a while
        waited = melos["alice"]("send", f"@{names['bob']}", "waited for")
        assert waited.returncode == 0, waited.stderr
        assert "melo: warning: rate limited by the server; retrying in " in waited.stderr

        assert await use_up_the_window("carol") > 10
        impatient = melos["carol"]("send", f"@{names['bob']}", "never sent", extra_env={"MELO_RATE_LIMIT_WAIT": "0"})
        assert impatient.returncode == 1
        assert re.fullmatch(r"melo: error: too many requests; retry in \d+ s\n", impatient.stderr)
        bad = melos["carol"]("send", f"@{names['bob']}", "x", extra_env={"MELO_RATE_LIMIT_WAIT": "soon"})
        assert bad.returncode == 2 and "MELO_RATE_LIMIT_WAIT" in bad.stderr
        texts = await received_texts(server, tmp_path / "bob", names["alice"])
    assert texts == ["waited for"]  # exactly once
