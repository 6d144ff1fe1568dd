"""Wire models of the background duties: scheduled messages, chat timers, retention (admin), web push.

The server's routes are in server/jobs/router.py and server/push/router.py; docs/protocol.md documents both.
"""

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field, field_validator, model_validator

from melo_protocol.wire.base import Request, Response
from melo_protocol.wire.bounds import Id
from melo_protocol.wire.chats import E2EEnvelope, check_text

MAX_SCHEDULE_AHEAD = timedelta(days=366)  # how far ahead a message may be scheduled


class ScheduleRequest(Request):
    txn_id: str = Field(min_length=1, max_length=64)
    text: str | None = None  # the same limit as a message sent now (check_text)
    e2e: E2EEnvelope | None = None
    reply_to: Id | None = None
    send_at: datetime

    @field_validator("text")
    @classmethod
    def _text_size(cls, value: str | None) -> str | None:
        return check_text(value) if value is not None else None

    @field_validator("send_at")
    @classmethod
    def _zoned(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("send time needs a time zone (Z or an offset such as +02:00)")
        return value

    @model_validator(mode="after")
    def _one_content(self) -> "ScheduleRequest":
        if (self.text is None) == (self.e2e is None):
            raise ValueError("give exactly one of text or e2e")
        return self


class ScheduledOut(Response):
    id: int
    chat_id: int
    txn_id: str
    send_at: datetime
    created_at: datetime
    text: str | None = None  # None in E2E chats: the server holds only the envelope
    e2e: dict[str, Any] | None = None


class ScheduledList(Response):
    scheduled: list[ScheduledOut]


class TimerRequest(Request):
    seconds: int | None = Field(ge=5, le=366 * 86400)


class TimerOut(Response):
    chat_id: int
    seconds: int | None = None


class RetentionRequest(Request):
    days: int | None = Field(ge=1, le=36500)


class RetentionOut(Response):
    chat_id: int
    days: int | None = None
    effective_days: int | None = None


class RetentionRun(Response):
    purged: dict[str, int]


class VapidKeyOut(Response):
    public_key: str
    kid: str
    algorithm: str = "ES256"


class PushSubscriptionIn(Request):
    endpoint: str = Field(min_length=8, max_length=1000)
    p256dh: str = Field(min_length=80, max_length=128)
    auth: str = Field(min_length=16, max_length=64)
    include_sender: bool = False


class PushSubscriptionOut(Response):
    id: int
    endpoint: str
    device_id: str
    include_sender: bool
    created_at: datetime
    last_success_at: datetime | None = None
    current_device: bool = False


class PushSubscriptionList(Response):
    subscriptions: list[PushSubscriptionOut]
