"""Encrypting a chat message for the members of now, and posting it under the server's check.

An E2E message carries the digest of the devices it was encrypted for; the server refuses it
(``recipients_changed``) when the chat's member devices differ, and it is encrypted again for them.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from melo_protocol.client.devices import DeviceDirectory
from melo_protocol.client.errors import BadRequest, Conflict
from melo_protocol.crypto import CryptoMachine
from melo_protocol.wire import ErrorCode
from melo_protocol.wire.chats import check_text_size

log = logging.getLogger("melo.sdk")

SEND_ATTEMPTS = 3  # an E2E send refused with recipients_changed is re-encrypted for the devices of now
T = TypeVar("T")


def check_text(text: str) -> None:
    """The text limit of a channel, for every chat: an E2E text is checked here, before it is encrypted
    (the server sees only the ciphertext), so it is refused in the same words as in a channel."""
    try:
        check_text_size(text)
    except ValueError as exc:
        raise BadRequest(422, "validation_error", str(exc), {"fields": ["text"]}) from None


class ChatEncryptor:
    def __init__(
        self, directory: DeviceDirectory, *, crypto: Callable[[], CryptoMachine], after_encrypt: Callable[[], object]
    ) -> None:
        self.directory = directory
        self._crypto = crypto
        self._after_encrypt = after_encrypt  # the crypto machine's events are handled at once
        self._lock = asyncio.Lock()

    async def encrypt(
        self, chat_id: int, content: dict[str, Any], *, checked: bool, fresh: bool = False
    ) -> tuple[dict[str, Any], str]:
        """(envelope, digest of the devices it is for).

        ``checked``: the request carrying the envelope also carries the digest, and the server refuses
        it if the chat's member devices differ. Only then may the remembered recipients be used, and
        only when no key goes out with this message: any key sharing is for the members of now (a
        member removed a moment ago must get no new keys, even before this client hears of it).
        """
        directory = self.directory
        async with self._lock:  # one Megolm session per chat: encrypt and share in order
            doc = directory.remembered_recipients(chat_id) if checked and not fresh else None
            if doc is not None and self._crypto().needs_key_sharing(chat_id, directory.by_user_id(doc["devices"])):
                doc = None
            if doc is None:
                doc = await directory.fetch_recipients(chat_id, fresh=fresh)
            devices = directory.by_user_id(doc["devices"])
            await directory.ensure_olm_sessions(devices)
            envelope, to_device = self._crypto().encrypt_for_chat(chat_id, content, devices)
            self._after_encrypt()
            if to_device:
                await directory.send_to_device(to_device)  # keys first, so the message can be read at once
            return envelope, str(doc["digest"])

    async def post(
        self, chat_id: int, content: dict[str, Any], post: Callable[[dict[str, Any], str], Awaitable[T]]
    ) -> T:
        """Encrypt and ``post(envelope, digest)``; re-encrypt for the devices of now on recipients_changed."""
        for attempt in range(SEND_ATTEMPTS):
            envelope, digest = await self.encrypt(chat_id, content, checked=True, fresh=attempt > 0)
            try:
                return await post(envelope, digest)
            except Conflict as exc:
                if exc.code != ErrorCode.RECIPIENTS_CHANGED or attempt == SEND_ATTEMPTS - 1:
                    raise
                log.info("chat %s: members or devices changed; encrypting again", chat_id)
                self.directory.forget_recipients(chat_id)
        raise AssertionError("unreachable")
