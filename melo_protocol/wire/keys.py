"""The E2E key directory and the to-device queue: REST bodies and frames.

The server keeps public keys only. Device keys and one-time keys are signed by the device's
ed25519 key over canonical JSON (see ``melo_protocol.crypto.signing``); the server checks them.
"""

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from melo_protocol.wire.base import Request, Response
from melo_protocol.wire.bounds import Id, Seq

MAX_ONE_TIME_KEYS_PER_UPLOAD = 200
ONE_TIME_KEYS_LOW_WATER = 10
TO_DEVICE_TTL_DAYS = 7


def recipient_devices_digest(devices: Iterable[tuple[int, str, str]]) -> str:
    """The digest of an E2E chat's recipient devices, as a sender and the server both compute it.

    ``devices`` are (user id, device id, curve25519 key) of every device with uploaded keys of every
    current member (deactivated accounts have none). A send carrying this digest is refused with
    ``recipients_changed`` when the server's differs, so a sender may encrypt for a cached device list.
    """
    lines = sorted(f"{int(user_id)} {device_id} {curve25519}" for user_id, device_id, curve25519 in devices)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


class KeysUpload(Request):
    device_keys: dict[str, Any] | None = None
    one_time_keys: dict[str, dict[str, Any]] | None = Field(default=None, max_length=MAX_ONE_TIME_KEYS_PER_UPLOAD)
    fallback_key: dict[str, dict[str, Any]] | None = Field(default=None, max_length=1)


class KeyCounts(Response):
    one_time_key_count: int
    fallback_unused: bool


class KeysQuery(Request):
    users: list[str] = Field(min_length=1, max_length=1000)


class KeysQueryResult(Response):
    # username → device id → signed device keys
    devices: dict[str, dict[str, dict[str, Any]]]


class KeysClaim(Request):
    # username → device ids to claim one key for
    devices: dict[str, list[str]] = Field(max_length=1000)


class KeysClaimResult(Response):
    # username → device id → {key id: signed key}
    one_time_keys: dict[str, dict[str, dict[str, Any]]]
    # "username/device" entries that got their fallback key (no one-time key was left)
    fallback_used: list[str] = Field(default_factory=list)


class ToDeviceSend(Request):
    type: str = Field(min_length=1, max_length=64)
    # username → device id ("*" = every device of that user) → content
    messages: dict[str, dict[str, dict[str, Any]]] = Field(max_length=1000)


class ToDeviceOut(Response):
    id: int
    type: str
    sender: str
    sender_id: int
    sender_device: str
    content: dict[str, Any]
    created_at: datetime


class ToDeviceList(Response):
    messages: list[ToDeviceOut]


MAX_ACK_IDS = 500


class ToDeviceAck(Request):
    """Which of this device's to-device messages it has processed; the server deletes them.

    ``ids`` names exactly the messages the device fetched. ``up_to`` deletes every message up to that
    id, including one that committed late with a lower id and was never fetched: it stays for old
    clients, and new ones send ``ids``.
    """

    ids: list[Id] | None = Field(default=None, min_length=1, max_length=MAX_ACK_IDS)
    up_to: Seq | None = None

    @model_validator(mode="after")
    def _one_of(self) -> "ToDeviceAck":
        if (self.ids is None) == (self.up_to is None):
            raise ValueError("give exactly one of ids or up_to")
        return self
