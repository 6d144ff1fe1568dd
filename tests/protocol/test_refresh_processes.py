"""Several processes on one profile refresh at once (the CLI, `melo listen`, the TUI): the session lives.

A refresh token is spent by use and a spent one presented again revokes the whole session, so the SDK
keeps one refresh in flight per profile across processes (a file lock beside the credentials) and, once
it holds the lock, takes a refresh another process already made instead of spending the old token.
"""

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from melo_protocol.client import CredentialStore, MeloClient
from tests.live import LiveServer
from tests.protocol.conftest import PASSWORD, new_username

PROCESSES = 4
# one SDK client per process: announces itself, waits for "go", refreshes (as it must, or forced), checks
CHILD = r"""
import asyncio, json, sys
from pathlib import Path
from melo_protocol.client import CredentialStore, MeloClient, MeloError

async def main() -> None:
    home, profile, url, forced = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "forced"
    store = CredentialStore(home, profile, warn=lambda _m: None)
    async with MeloClient(url, store=store) as client:
        print("ready", flush=True)
        sys.stdin.readline()
        try:
            if forced:
                await client.refresh()
            first = await client.whoami()
            again = await client.whoami()  # with the token this process ended with
        except MeloError as exc:
            print(json.dumps({"error": getattr(exc, "code", type(exc).__name__)}), flush=True)
            return
        print(json.dumps({"session": first.session_id, "again": again.session_id}), flush=True)

asyncio.run(main())
"""


def _refresh_in_processes(store: CredentialStore, url: str, forced: bool) -> list[dict[str, str]]:
    """Start the children, let all of them go at once, and collect what each one printed last."""
    env = {**os.environ, "MELO_KEYRING": "file"}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store.home), store.profile, url, "forced" if forced else "expiring"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:  # all started and holding a client on the stale tokens
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:  # then all at once
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()


@pytest.mark.parametrize("forced", [False, True], ids=["expiring", "forced"])
async def test_processes_refreshing_at_once_keep_the_session(
    live_server: LiveServer, tmp_path: Path, forced: bool
) -> None:
    store = CredentialStore(tmp_path / "home", "shared", warn=lambda _m: None)
    async with MeloClient(live_server.url, store=store) as c:
        session_id = (await c.register(new_username(), PASSWORD)).session_id
    creds = store.load()
    assert creds is not None
    store.save(dataclasses.replace(creds, access_expires_at=time.time() + 1))  # due for refresh everywhere

    results = await asyncio.to_thread(_refresh_in_processes, store, live_server.url, forced)
    assert results == [{"session": session_id, "again": session_id}] * PROCESSES  # no refresh_token_reused
    after = store.load()
    assert after is not None and after.refresh_token != creds.refresh_token
    async with MeloClient(live_server.url, store=store) as c:  # the stored login still works, refreshes too
        assert (await c.whoami()).session_id == session_id
        await c.refresh()
        assert (await c.whoami()).session_id == session_id
