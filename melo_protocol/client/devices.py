"""Whom to encrypt for, and how to reach their devices: the Messenger's device directory.

Device keys of the users we talk to (fetched when unknown, announced changed or older than a minute),
chat members, whom a chat's messages were last encrypted for (remembered in the message cache so a
one-shot send can skip the look-ups), Olm sessions (one-time keys claimed when missing), this device's
own key upload, and sending Olm-encrypted to-device messages. The crypto itself is the machine's.
"""

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from melo_protocol.client import events as ev
from melo_protocol.client.cache import MessageCache
from melo_protocol.client.errors import MeloError
from melo_protocol.client.rest import MeloClient
from melo_protocol.client.translate import KEY_REQUEST
from melo_protocol.crypto import CryptoMachine, MissingSessionKey, OlmPayload, ToDeviceMessage
from melo_protocol.crypto.errors import CryptoError
from melo_protocol.wire.chats import MessageOut
from melo_protocol.wire.keys import recipient_devices_digest

log = logging.getLogger("melo.sdk")

ONE_TIME_KEYS_TARGET = 50
DEVICE_LIST_TTL_S = 60.0
# how often a start asks the server how many one-time keys are left; live clients also hear `keys.low`,
# and the fallback key covers a device that runs out in between
KEY_COUNT_CHECK_S = 300.0

DeviceKeys = dict[str, Any]  # one device's signed keys, as the server lists them
DevicesByUser = dict[int, list[DeviceKeys]]  # user id → device keys (what the crypto machine takes)


@dataclass
class Identity:
    """Who this device is; known once the Messenger has started."""

    user_id: int = 0
    username: str = ""
    device_id: str = ""


class DeviceDirectory:
    def __init__(
        self,
        client: MeloClient,
        me: Identity,
        *,
        crypto: Callable[[], CryptoMachine],
        cache: Callable[[], MessageCache | None],
        events: list[ev.Event],
    ) -> None:
        self.client = client
        self.me = me
        self._crypto = crypto
        self._cache = cache
        self._events = events  # warnings for the user (a new unverified device), yielded with the stream's
        self.usernames: dict[int, str] = {}
        self._members: dict[int, list[str]] = {}  # chat id → usernames
        self._devices: dict[str, dict[str, DeviceKeys]] = {}  # username → device id → device keys
        self._stale_users: set[str] = set()
        self._devices_fetched_at = 0.0
        # chat id → {"members", "devices" (username → device id → keys), "digest"}: whom the last
        # encryption was for; remembered in the cache so a one-shot send can skip the look-ups
        self._recipients: dict[int, dict[str, Any]] = {}

    @property
    def crypto(self) -> CryptoMachine:
        return self._crypto()

    # -- this device's keys --------------------------------------------------------------------------------
    async def upload_keys(self, *, force: bool = False) -> None:
        """Top up one-time keys when the server runs low; asked at most every KEY_COUNT_CHECK_S unless forced."""
        now = time.time()
        cache = self._cache()
        if not force and cache is not None and self.crypto.store.device_keys_published():
            checked = cache.state("keys_checked_at")
            if isinstance(checked, int | float) and 0 <= now - checked < KEY_COUNT_CHECK_S:
                return
        counts = await self.client.keys_count()
        body = self.crypto.keys_for_upload(
            counts.one_time_key_count, fallback_unused=counts.fallback_unused, target=ONE_TIME_KEYS_TARGET
        )
        if body:
            await self.client.keys_upload(**body)
            self.crypto.mark_keys_uploaded()
        if cache is not None:
            cache.put_state("keys_checked_at", now)

    # -- members and their devices -------------------------------------------------------------------------
    async def member_names(self, chat_id: int, *, fresh: bool = False) -> list[str]:
        if fresh or chat_id not in self._members:
            members = await self.client.list_members(chat_id)
            self._members[chat_id] = [m.user.username for m in members]
            for m in members:
                self.usernames[m.user.id] = m.user.username
        return self._members[chat_id]

    def members_changed(self, chat_id: int) -> None:
        self._members.pop(chat_id, None)
        self.forget_recipients(chat_id)

    async def device_keys(self, usernames: list[str]) -> DevicesByUser:
        """user id → device keys, for these users (fetched when unknown or announced changed)."""
        now = time.monotonic()
        if now - self._devices_fetched_at > DEVICE_LIST_TTL_S:
            # devices.changed events keep the lists fresh while we listen; a client that does not
            # listen (a script) still picks up new devices within this period
            self._stale_users.update(self._devices)
            self._devices_fetched_at = now
        wanted = [u for u in usernames if u not in self._devices or u in self._stale_users]
        for i in range(0, len(wanted), 500):
            got = await self.client.keys_query(wanted[i : i + 500])
            for name, devices in got.items():
                known = self._devices.get(name)
                if known is not None and name != self.me.username:
                    # a contact gained a device we have never seen: say so, it is unverified
                    for device_id in sorted(set(devices) - set(known)):
                        warning = ev.KeyWarning(user=name, device_id=device_id, reason="new_unverified_device")
                        self._events.append(warning)
                self._devices[name] = devices
                self._stale_users.discard(name)
        return self.by_user_id({name: self._devices.get(name, {}) for name in usernames})

    def by_user_id(self, devices: dict[str, dict[str, DeviceKeys]]) -> DevicesByUser:
        """username → device id → keys, as user id → [keys] (what the crypto machine takes)."""
        out: DevicesByUser = {}
        for name, per_device in devices.items():
            for keys in per_device.values():
                uid = int(keys.get("user_id", 0))
                self.usernames[uid] = name
                out.setdefault(uid, []).append(keys)
        return out

    async def list_devices(self, username: str) -> list[dict[str, Any]]:
        """Devices of a user (read now) with their fingerprints and our trust in them."""
        self._stale_users.add(username)
        by_user = await self.device_keys([username])
        self.crypto.track_devices(by_user)
        out = []
        for uid, keys_list in by_user.items():
            for keys in keys_list:
                record = self.crypto.device(uid, keys["device_id"])
                out.append(
                    {
                        "user": username,
                        "device_id": keys["device_id"],
                        "ed25519": keys["keys"].get(f"ed25519:{keys['device_id']}"),
                        "trust": record.trust.value if record else "unverified",
                        "current": uid == self.me.user_id and keys["device_id"] == self.me.device_id,
                    }
                )
        return out

    async def devices_changed(self, user: str) -> None:
        """The server says ``user``'s devices changed: read them again, now if they are a contact we know."""
        self._stale_users.add(user)
        self.forget_recipients(user=user)
        if user in self._devices and user != self.me.username:
            with contextlib.suppress(MeloError):
                await self.device_keys([user])  # look now: a new device is flagged at once

    # -- whom a chat's messages are encrypted for ------------------------------------------------------------
    def remembered_recipients(self, chat_id: int) -> dict[str, Any] | None:
        doc = self._recipients.get(chat_id)
        cache = self._cache()
        if doc is None and cache is not None:
            doc = cache.state(f"recipients:{chat_id}")
            if not (
                isinstance(doc, dict)
                and isinstance(doc.get("devices"), dict)
                and isinstance(doc.get("digest"), str)
                and isinstance(doc.get("members"), list)
            ):
                return None
            self._recipients[chat_id] = doc
            for name, devices in doc["devices"].items():
                self._devices.setdefault(name, devices)  # a later look-up then flags devices new since
        return doc

    async def fetch_recipients(self, chat_id: int, *, fresh: bool) -> dict[str, Any]:
        """The chat's members (read now) and their devices (read now when ``fresh``), remembered."""
        names = await self.member_names(chat_id, fresh=True)
        if fresh:
            self._stale_users.update(names)
        await self.device_keys(names)
        devices = {name: self._devices.get(name, {}) for name in names}
        digest = recipient_devices_digest(
            (int(keys.get("user_id", 0)), device_id, str(keys.get("keys", {}).get(f"curve25519:{device_id}", "")))
            for per_device in devices.values()
            for device_id, keys in per_device.items()
        )
        doc = {"members": names, "devices": devices, "digest": digest}
        self._recipients[chat_id] = doc
        cache = self._cache()
        if cache is not None:
            cache.put_state(f"recipients:{chat_id}", doc)
        return doc

    def forget_recipients(self, chat_id: int | None = None, *, user: str | None = None) -> None:
        """Drop what we remember of one chat's recipients, or of every chat ``user`` is in."""
        cache = self._cache()
        if chat_id is not None:
            self._recipients.pop(chat_id, None)
            if cache is not None:
                cache.drop_state(f"recipients:{chat_id}")
            return
        for cid in [c for c, doc in self._recipients.items() if user in doc["members"]]:
            del self._recipients[cid]
        if cache is not None:
            cache.drop_state("recipients:", prefix=True)  # rare: other chats are simply read again

    # -- Olm sessions and to-device messages -----------------------------------------------------------------
    async def ensure_olm_sessions(self, devices: DevicesByUser) -> None:
        needing = self.crypto.devices_needing_olm_sessions(devices)
        if not needing:
            return
        claim = {self.usernames[uid]: ids for uid, ids in needing.items() if uid in self.usernames}
        result = await self.client.keys_claim(claim)
        by_user_id = {
            uid: result.one_time_keys.get(name, {})
            for uid, name in self.usernames.items()
            if name in result.one_time_keys
        }
        for user_id, device_id, reason in self.crypto.add_claimed_keys(by_user_id):
            log.info("no Olm session with %s/%s: %s", user_id, device_id, reason)

    async def encrypt_to_user(
        self, username: str, event_type: str, content: dict[str, Any], *, device_id: str | None = None
    ) -> list[ToDeviceMessage]:
        """``content`` encrypted for each device of ``username`` (or only ``device_id``) we can reach."""
        devices = await self.device_keys([username])
        await self.ensure_olm_sessions(devices)
        messages = []
        for uid, keys_list in devices.items():
            for keys in keys_list:
                if device_id is None or keys["device_id"] == device_id:
                    with contextlib.suppress(CryptoError):
                        messages.append(self.crypto.encrypt_to_device(uid, keys["device_id"], event_type, content))
        return messages

    async def send_to_device(self, messages: list[ToDeviceMessage]) -> None:
        by_type: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        for m in messages:
            name = self.usernames.get(m.user_id)
            if name is None:
                continue
            by_type.setdefault(m.type, {}).setdefault(name, {})[m.device_id] = m.content
        for type_, payload in by_type.items():
            await self.client.send_to_device(type_, payload)

    # -- room keys asked for and asked of us -----------------------------------------------------------------
    async def request_key(self, out: MessageOut, exc: MissingSessionKey) -> None:
        """Ask the sender's devices to share the session again (they check we are still a member)."""
        with contextlib.suppress(MeloError, CryptoError):
            request = {"chat_id": out.chat_id, "session_id": exc.session_id, "sender_key": exc.sender_key}
            await self.send_to_device(await self.encrypt_to_user(out.sender, KEY_REQUEST, request))

    async def on_key_request(self, payload: OlmPayload) -> None:
        """Re-share one of our sessions with a device that is still a member of that chat."""
        content = payload.content
        chat_id = int(content.get("chat_id", 0))
        requester = self.usernames.get(payload.sender_user_id)
        with contextlib.suppress(MeloError, CryptoError):
            self._members.pop(chat_id, None)
            if requester is None or requester not in await self.member_names(chat_id):
                return
            message = self.crypto.reshare_room_key(
                str(content.get("session_id")), payload.sender_user_id, payload.sender_device_id, 0
            )
            await self.send_to_device([message])
