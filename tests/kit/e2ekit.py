"""Helpers for end-to-end tests: SDK Messengers (one per device) against the live server."""

import asyncio
from pathlib import Path
from typing import Any

from melo_protocol.client import CredentialStore, MeloClient
from melo_protocol.client import events as ev
from melo_protocol.client.messenger import Messenger
from tests.kit.livekit import Live

PASSWORD = "correct horse battery"


async def device(live: Live, home: Path, username: str, profile: str, *, register: bool = False) -> Messenger:
    store = CredentialStore(home, profile)
    client = MeloClient(live.server.url, store=store)
    if register:
        await client.register(username, PASSWORD, device_name=profile)
    else:
        await client.login(username, PASSWORD, device_name=profile)
    m = Messenger.open(client, store)
    await m.start()
    return m


async def next_of(m: Messenger, kind: type, pred: Any = None, timeout: float = 15.0) -> Any:
    """The next event of a type (and matching pred) from a running messenger."""
    async with asyncio.timeout(timeout):
        async for event in m.events():
            if isinstance(event, kind) and (pred is None or pred(event)):
                return event
    raise AssertionError("stream ended")


async def collect_texts(m: Messenger, chat_id: int, count: int, timeout: float = 60.0) -> list[ev.Message]:
    got: list[ev.Message] = []
    async with asyncio.timeout(timeout):
        async for event in m.events():
            if isinstance(event, ev.MessageReceived) and event.chat_id == chat_id and event.message:
                got.append(event.message)
                if len(got) == count:
                    return got
    return got


async def close_all(*ms: Messenger) -> None:
    for m in ms:
        await m.close()
        await m.client.aclose()
