"""Helpers for call tests: Messengers with CallManagers fed by their own event pumps."""

import asyncio
from pathlib import Path
from typing import Any

from melo_protocol.client import events as ev
from melo_protocol.client.call_manager import CallManager
from melo_protocol.client.messenger import Messenger
from tests.kit.e2ekit import device
from tests.kit.livekit import Live
from tests.kit.wskit import connect, recv_frame, send_auth


class Party:
    """One device: its Messenger, its CallManager and a task passing CallSignals to the manager."""

    def __init__(self, messenger: Messenger, **manager_options: Any) -> None:
        self.m = messenger
        self.calls = CallManager(messenger, **manager_options)
        self.signals: list[ev.CallSignal] = []
        self._signal_seen = asyncio.Event()
        self.task = asyncio.create_task(self._pump())

    @property
    def username(self) -> str:
        return self.m.username

    async def _pump(self) -> None:
        async for event in self.m.events():
            if isinstance(event, ev.CallSignal):
                self.signals.append(event)
                await self.calls.handle(event)
                self._signal_seen.set()
                self._signal_seen = asyncio.Event()

    async def signal(self, pred: Any, timeout: float = 15.0) -> ev.CallSignal:
        """Until a CallSignal matching pred has been handled."""
        async with asyncio.timeout(timeout):
            while True:
                for s in self.signals:
                    if pred(s):
                        return s
                await self._signal_seen.wait()

    async def close(self) -> None:
        await self.calls.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.m.close()
        await self.m.client.aclose()


async def pair(live: Live, home: Path, **options: Any) -> tuple[Party, Party, int]:
    """alice and bob with a DM between them (so they may call each other); returns the DM's id."""
    tag = home.name[-6:].replace("_", "")
    a = await device(live, home, f"alice{tag}", "a1", register=True)
    b = await device(live, home, f"bob{tag}", "b1", register=True)
    chat = await a.client.create_direct(b.username)
    return Party(a, **options), Party(b, **options), chat.id


async def chat_events(live: Live, m: Messenger, chat_id: int, type_: str, timeout: float = 10.0) -> dict[str, Any]:
    """The first stored event of a type in a chat, read from the WebSocket backlog."""
    token = await m.client.access_token()
    async with connect(live.server.ws_url) as ws:
        await send_auth(ws, token, {str(chat_id): 0})
        async with asyncio.timeout(timeout):
            while True:
                frame = await recv_frame(ws, timeout)
                if frame.get("type") == type_ and frame.get("chat_id") == chat_id:
                    return frame
                if frame.get("type") == "caught_up":
                    raise AssertionError(f"no {type_} event in chat {chat_id}")
