"""An SDK client process stops between messages and restarts from its encrypted store; a wrong store
key fails with a clear error, not a crash."""

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from melo_protocol.client.keystore import _file as store_key_file  # the 0600 file used when MELO_KEYRING=file
from melo_protocol.client.tokens import CredentialStore
from tests.kit.e2ekit import close_all, collect_texts, device
from tests.kit.livekit import Live

CLIENT = textwrap.dedent('''
    import asyncio, sys
    from pathlib import Path
    from melo_protocol.client import CredentialStore, MeloClient
    from melo_protocol.client import events as ev
    from melo_protocol.client.messenger import Messenger

    async def main(home, chat_id, action, text):
        store = CredentialStore(Path(home), "bob")
        client = MeloClient(store=store)
        m = Messenger.open(client, store)
        await m.start()
        try:
            if action == "send":
                await m.send_text(int(chat_id), text)
                print("SENT", flush=True)
            else:
                async with asyncio.timeout(20):
                    async for event in m.events():
                        if isinstance(event, ev.MessageReceived) and event.message.chat_id == int(chat_id):
                            print("GOT", event.message.status, event.message.text, flush=True)
                            if event.message.text == text:
                                return
        finally:
            await m.close()
            await client.aclose()

    asyncio.run(main(*sys.argv[1:]))
''')


async def _bob_process(home: Path, chat_id: int, action: str, text: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MELO_KEYRING": "file"}
    argv = [sys.executable, "-c", CLIENT, str(home), str(chat_id), action, text]
    return await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, timeout=60)


async def test_client_process_restarts_from_its_encrypted_store(live: Live, tmp_path: Path) -> None:
    tag = tmp_path.name[-5:].replace("_", "")
    alice = await device(live, tmp_path / "alice", f"alice{tag}", "alice", register=True)
    bob = await device(live, tmp_path / "bob", f"bob{tag}", "bob", register=True)
    chat = await alice.client.create_direct(bob.username)
    await alice.send_text(chat.id, "before the restart")
    assert [m.text for m in await collect_texts(bob, chat.id, 1)] == ["before the restart"]
    await bob.close()  # bob's process stops between messages
    await bob.client.aclose()

    await alice.send_text(chat.id, "while bob was away")
    run = await _bob_process(tmp_path / "bob", chat.id, "listen", "while bob was away")
    assert run.returncode == 0, run.stderr
    assert "GOT ok while bob was away" in run.stdout
    run = await _bob_process(tmp_path / "bob", chat.id, "send", "bob is back")
    assert run.returncode == 0 and "SENT" in run.stdout, run.stderr
    got = await collect_texts(alice, chat.id, 3)
    assert [m.text for m in got][-1] == "bob is back" and got[-1].status == "ok"

    # a wrong store key: a clear E2E error naming the store, no traceback from deep inside
    store = CredentialStore(tmp_path / "bob", "bob")
    creds = store.load()
    assert creds is not None
    key_file = store_key_file(store, creds.device_id)
    key_file.write_text("QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")
    run = await _bob_process(tmp_path / "bob", chat.id, "send", "x")
    assert run.returncode != 0
    assert "cannot open the local encrypted store" in run.stderr
    from melo_protocol.client import MeloClient
    from melo_protocol.client.errors import E2EError
    from melo_protocol.client.messenger import Messenger

    client = MeloClient(store=store)
    with pytest.raises(E2EError, match="local encrypted store"):
        await Messenger.open(client, store).start(live=False)
    await client.aclose()
    await close_all(alice)
