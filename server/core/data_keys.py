"""At-rest data keys for server-readable content (broadcast channels): AES-256-GCM, versioned.

Each sealed row stores the id of its key. Rotation makes a new active key at once; a background pass
re-encrypts older rows, and the old key is retired only when no row uses it, so reads never fail.

Every worker seals with the key it believes active. After a rotation elsewhere it learns the new one
from the bus's "keys" event at once, and, should that be lost, from the database within
``STALE_AFTER_S``, as the JWT ring does.
"""

import asyncio
import base64
import logging
import os
import secrets
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.core.background import finish
from server.core.secrets import SecretBox
from server.db.models import Message, ServerState, SigningKey
from server.db.types import utcnow

ACTIVE_STATE = "data.active_kid"
STALE_AFTER_S = 10.0
log = logging.getLogger("melo.keys")


class DataKeyRing:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], box: SecretBox) -> None:
        self._sessions = sessions
        self._box = box
        self._keys: dict[str, AESGCM] = {}
        self._active: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._loaded_at = 0.0

    def _new_row(self) -> SigningKey:
        now = utcnow()
        kid = "data-" + now.strftime("%Y%m%d") + "-" + secrets.token_hex(4)
        return SigningKey(kid=kid, kind="data", algorithm="A256GCM", created_at=now, activates_at=now,
                          private_sealed=self._box.seal(os.urandom(32), context=kid.encode()), public_jwk="{}")

    async def ensure(self) -> None:
        async with self._sessions() as db:
            if await db.get(ServerState, ACTIVE_STATE) is None:
                row = self._new_row()
                db.add(row)
                db.add(ServerState(key=ACTIVE_STATE, value=row.kid))
                try:
                    await db.commit()
                except IntegrityError:
                    await db.rollback()
        await self.reload()

    async def reload(self) -> None:
        async with self._sessions() as db:
            rows = (await db.scalars(select(SigningKey).where(SigningKey.kind == "data"))).all()
            state = await db.get(ServerState, ACTIVE_STATE)
        self._keys = {r.kid: AESGCM(self._box.open(r.private_sealed, context=r.kid.encode())) for r in rows}
        self._active = state.value if state else None
        self._loaded_at = time.monotonic()

    async def refresh_if_stale(self) -> None:
        """Before sealing: a ring loaded more than ``STALE_AFTER_S`` ago is read again."""
        if time.monotonic() - self._loaded_at > STALE_AFTER_S:
            await self.reload()

    @property
    def active_kid(self) -> str | None:
        return self._active

    def seal(self, plaintext: str, aad: bytes) -> tuple[str, str]:
        assert self._active is not None
        nonce = os.urandom(12)
        ct = self._keys[self._active].encrypt(nonce, plaintext.encode(), aad)
        return self._active, base64.b64encode(nonce + ct).decode()

    async def open(self, kid: str, body: str, aad: bytes) -> str:
        if kid not in self._keys:
            await self.reload()  # rotated on another worker
        return self.open_loaded(kid, body, aad)

    def open_loaded(self, kid: str, body: str, aad: bytes) -> str:
        raw = base64.b64decode(body)
        return self._keys[kid].decrypt(raw[:12], raw[12:], aad).decode()

    def has(self, kid: str) -> bool:
        return kid in self._keys

    async def rotate(self) -> SigningKey:
        row = self._new_row()
        async with self._sessions() as db, db.begin():
            db.add(row)
            state = await db.get(ServerState, ACTIVE_STATE)
            if state is None:
                db.add(ServerState(key=ACTIVE_STATE, value=row.kid))
            else:
                state.value = row.kid
        await self.reload()
        return row

    async def reencrypt(self, batch: int = 500) -> int:
        """Move every sealed row to the active key, then retire keys no row uses. Returns rows moved."""
        moved = 0
        while True:
            async with self._sessions() as db:
                rows = (
                    await db.scalars(
                        select(Message)
                        .where(Message.key_id.is_not(None), Message.key_id != self._active)
                        .limit(batch)
                    )
                ).all()
                if not rows:
                    break
                for m in rows:
                    aad = str(m.chat_id).encode()
                    text = await self.open(m.key_id or "", m.body or "", aad)
                    m.key_id, m.body = self.seal(text, aad)
                await db.commit()
                moved += len(rows)
            await asyncio.sleep(0)  # yield to requests between batches
        async with self._sessions() as db:
            in_use = set((await db.scalars(select(Message.key_id).where(Message.key_id.is_not(None))
                                           .group_by(Message.key_id))).all())
            for key in (await db.scalars(select(SigningKey).where(SigningKey.kind == "data",
                                                                   SigningKey.retired_at.is_(None)))).all():
                if key.kid != self._active and key.kid not in in_use:
                    key.retired_at = utcnow()
            await db.commit()
        return moved

    def start_reencryption(self) -> None:
        """Re-encrypt in the background (one pass at a time per worker)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._reencrypt_logged(), name="melo-reencrypt")

    async def _reencrypt_logged(self) -> None:
        try:
            moved = await self.reencrypt()
            log.info("re-encrypted %d rows under data key %s", moved, self._active)
        except Exception:
            log.exception("re-encryption stopped; it resumes at the next rotation or start")

    async def stop_reencryption(self) -> None:
        """Cancel a running pass and wait for it (it resumes at the next start)."""
        await finish([self._task], what="re-encryption")

    async def wait_reencrypted(self) -> None:
        if self._task is not None:
            await self._task

    async def count_on_old_keys(self) -> int:
        async with self._sessions() as db:
            return int((await db.execute(select(func.count(Message.id)).where(
                Message.key_id.is_not(None), Message.key_id != self._active))).scalar_one())
