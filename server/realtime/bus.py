"""The bus wakes connections on every worker; it never carries the only copy of anything.

In-process by default; Redis pub/sub when MELO_REDIS_URL is set. A message lost on the bus is
recovered by the client's resume (or by a connection's gap fill), never by luck.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

log = logging.getLogger("melo.bus")


class BusHeader(BaseModel):
    """A bus event between workers, but its frame: one JSON line, then the frame's text as it is sent.

    Short keys (the header goes with every event to every worker); the names say what they hold.
    """

    model_config = ConfigDict(populate_by_name=True)

    kind: str = Field(alias="k")
    chat_id: int | None = Field(alias="c")
    seq: int | None = Field(alias="s")
    user_ids: list[int] = Field(alias="u")
    member_add: list[int] = Field(alias="a")
    member_remove: list[int] = Field(alias="r")
    session_ids: list[str] = Field(alias="x")
    exclude_user: int | None = Field(alias="e")


@dataclass
class BusEvent:
    """One thing to deliver. ``frame`` is the pre-serialised JSON sent as-is to every recipient."""

    # "chat" | "typing" | "presence" | "revoke" | "device" | "keys" (a key was rotated: every worker reloads
    # its rings) | "sync" (local only: compare with the database)
    kind: str
    frame: str = ""
    chat_id: int | None = None
    seq: int | None = None
    user_ids: list[int] = field(default_factory=list)  # presence: recipients
    member_add: list[int] = field(default_factory=list)  # users whose connections join chat_id's route
    member_remove: list[int] = field(default_factory=list)  # … and leave it, after this event
    session_ids: list[str] = field(default_factory=list)  # revoke
    exclude_user: int | None = None  # typing: not echoed to the typist

    def encode(self) -> bytes:
        header = BusHeader(kind=self.kind, chat_id=self.chat_id, seq=self.seq, user_ids=self.user_ids,
                           member_add=self.member_add, member_remove=self.member_remove,
                           session_ids=self.session_ids, exclude_user=self.exclude_user)
        return header.model_dump_json(by_alias=True).encode() + b"\n" + self.frame.encode()

    @classmethod
    def decode(cls, raw: bytes) -> "BusEvent":
        head, _, frame = raw.partition(b"\n")
        h = BusHeader.model_validate_json(head)
        return cls(kind=h.kind, frame=frame.decode(), chat_id=h.chat_id, seq=h.seq, user_ids=h.user_ids,
                   member_add=h.member_add, member_remove=h.member_remove, session_ids=h.session_ids,
                   exclude_user=h.exclude_user)


Handler = Callable[[BusEvent], None]


class LocalBus:
    def __init__(self) -> None:
        self._handler: Handler | None = None

    def set_handler(self, handler: Handler) -> None:
        self._handler = handler

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, event: BusEvent) -> None:
        if self._handler is not None:
            self._handler(event)


class RedisBus:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._channel = prefix + "bus"
        self._handler: Handler | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def set_handler(self, handler: Handler) -> None:
        self._handler = handler

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="melo-bus")
        try:
            async with asyncio.timeout(10):
                await self._ready.wait()
        except TimeoutError:
            log.warning("redis bus not subscribed yet; continuing, it will retry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def publish(self, event: BusEvent) -> None:
        try:
            await self._redis.publish(self._channel, event.encode())
        except Exception as exc:  # clients recover through resume; never fail the write that happened
            log.warning("bus publish failed: %s", type(exc).__name__)

    async def _listen(self) -> None:
        backoff = 0.1
        subscribed_before = False
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._ready.set()
                backoff = 0.1
                if subscribed_before and self._handler is not None:
                    # Whatever was published while we were away is lost to this worker: its sockets
                    # compare their chats with the database now instead of waiting for the next event.
                    log.warning("redis bus resubscribed; syncing this worker's sockets")
                    self._handler(BusEvent(kind="sync"))
                subscribed_before = True
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is None or message.get("type") != "message":
                        continue
                    if self._handler is not None:
                        try:
                            self._handler(BusEvent.decode(message["data"]))
                        except Exception:
                            log.exception("bus handler failed")
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except Exception as exc:
                log.warning("redis bus lost (%s); resubscribing in %.1fs", type(exc).__name__, backoff)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(backoff)  # reconnect backoff, not synchronisation
                backoff = min(backoff * 2, 5.0)
