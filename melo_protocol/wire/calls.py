"""Calls: the ICE servers a client may use (STUN, and TURN with time-limited credentials), and missed-call
records. Call signalling itself never touches these: it travels as Olm-encrypted to-device messages."""

from datetime import datetime

from pydantic import Field

from melo_protocol.wire.base import Request, Response


class IceServer(Response):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServers(Response):
    ice_servers: list[IceServer]
    ttl_seconds: int


class MissedCall(Request):
    call_id: str = Field(min_length=1, max_length=64)
    at: datetime | None = None  # when the caller gave up; the server's clock when absent


class MissedCallOut(Response):
    chat_id: int
    seq: int
    call_id: str
    caller: str
    at: datetime
