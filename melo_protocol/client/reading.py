"""Decrypting the messages the server hands us, with the device's cache of what it read before.

A message whose room key has not arrived yet is shown as waiting for it (and the key is asked for);
one that cannot be decrypted is shown as such: reading never raises a crypto error.
"""

import logging
from collections.abc import Callable

from melo_protocol.client import events as ev
from melo_protocol.client.cache import MessageCache
from melo_protocol.client.devices import Identity
from melo_protocol.client.translate import decrypted_view, message_view
from melo_protocol.crypto import CryptoMachine, DecryptionError, MissingSessionKey
from melo_protocol.crypto.errors import CryptoError
from melo_protocol.wire.chats import MessageOut

log = logging.getLogger("melo.sdk")


class MessageReader:
    def __init__(
        self,
        me: Identity,
        *,
        crypto: Callable[[], CryptoMachine],
        cache: Callable[[], MessageCache | None],
        missing_key: Callable[[MessageOut, MissingSessionKey], None],
    ) -> None:
        self.me = me
        self._crypto = crypto
        self._cache = cache
        self._missing_key = missing_key  # remember the message for the key, and ask for the key

    def decrypt(self, out: MessageOut) -> ev.Message:
        """The message as this device can read it; what it read before is kept in (and read from) the cache."""
        message = self._decrypt_uncached(out)
        cache = self._cache()
        if cache is not None:
            if message.status == "ok" or message.status == "deleted":
                cache.put(message)
            elif (
                (cached := cache.get(out.chat_id, out.id)) is not None
                and cached.status == "ok"
                and cached.edited_at == message.edited_at
            ):
                return cached  # decrypted here before; its keys may be gone (a rotated-away device, a restore)
        return message

    def decrypt_live(self, out: MessageOut) -> ev.Message:
        """One message from the live stream: decrypted, and the crypto state it moved persisted."""
        message = self.decrypt(out)
        self._crypto().flush()
        return message

    def _decrypt_uncached(self, out: MessageOut) -> ev.Message:
        own = self.me.user_id
        if out.deleted:
            return message_view(out, None, "deleted", own_user_id=own)
        if out.e2e is None:
            return message_view(out, out.text, "ok", own_user_id=own)
        try:
            plain = self._crypto().decrypt_chat_message(out.chat_id, out.e2e, out.id)
        except MissingSessionKey as exc:
            self._missing_key(out, exc)
            return message_view(out, None, "waiting_for_key", own_user_id=own)
        except (DecryptionError, CryptoError) as exc:
            log.info("undecryptable message %s: %s", out.id, exc)
            return message_view(out, None, "undecryptable", own_user_id=own)
        return decrypted_view(out, plain, own_user_id=own)
