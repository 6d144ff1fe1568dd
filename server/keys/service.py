"""E2E key directory: device keys, one-time and fallback keys (each one-time key handed out once),
and the per-device to-device queue. Only users who share a chat (or oneself) may see or reach a device."""

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from melo_protocol.crypto.signing import verify_signed
from melo_protocol.wire import ErrorCode
from melo_protocol.wire.keys import (
    ONE_TIME_KEYS_LOW_WATER,
    TO_DEVICE_TTL_DAYS,
    KeyCounts,
    KeysUpload,
    ToDeviceOut,
)
from server.chats.service import users_sharing_chats
from server.core.caller import Caller
from server.core.errors import ApiError
from server.db.models import DeviceKeys, DeviceSession, FallbackKey, OneTimeKey, ToDeviceMessage, User
from server.db.types import utcnow
from server.realtime import frames
from server.realtime.bus import BusEvent, LocalBus, RedisBus


def _bad(message: str, **details: Any) -> ApiError:
    return ApiError(ErrorCode.INVALID_KEYS, message, details)


def _check_key_obj(obj: dict[str, Any], ed25519: str, user_id: int, device_id: str, what: str) -> None:
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        raise _bad(f"{what} must be an object with a 'key'")
    if not verify_signed(obj, ed25519, str(user_id), device_id):
        raise _bad(f"{what} signature does not verify against the device's ed25519 key")


async def upload(db: AsyncSession, caller: Caller, body: KeysUpload, *, bus: LocalBus | RedisBus) -> KeyCounts:
    user_id, device_id = caller.user.id, caller.claims.device_id
    current = await db.get(DeviceKeys, device_id)
    new_device = False
    if body.device_keys is not None:
        dk = body.device_keys
        keys = dk.get("keys") if isinstance(dk, dict) else None
        if not isinstance(keys, dict):
            raise _bad("device_keys.keys is missing")
        if str(dk.get("user_id")) != str(user_id) or dk.get("device_id") != device_id:
            raise _bad(
                "device_keys must name your user id and this session's device id", user_id=user_id, device_id=device_id
            )
        curve = keys.get(f"curve25519:{device_id}")
        ed = keys.get(f"ed25519:{device_id}")
        if not isinstance(curve, str) or not isinstance(ed, str) or len(curve) > 64 or len(ed) > 64:
            raise _bad("device_keys needs curve25519 and ed25519 keys for this device")
        if not verify_signed(dk, ed, str(user_id), device_id):
            raise _bad("device_keys signature does not verify")
        if current is not None and (current.ed25519 != ed or current.curve25519 != curve):
            # A device's identity never changes: a new identity is a new login (new device id).
            raise ApiError(ErrorCode.INVALID_KEYS, "this device already has different identity keys", status=409)
        if current is None:
            current = DeviceKeys(
                device_id=device_id,
                user_id=user_id,
                curve25519=curve,
                ed25519=ed,
                keys_json=json.dumps(dk),
                uploaded_at=utcnow(),
            )
            db.add(current)
            new_device = True
    if current is None and (body.one_time_keys or body.fallback_key):
        raise _bad("upload device_keys first")
    if body.one_time_keys:
        assert current is not None
        for key_id, obj in body.one_time_keys.items():
            if len(key_id) > 64:
                raise _bad("one-time key id too long")
            _check_key_obj(obj, current.ed25519, user_id, device_id, "one-time key")
        existing = set(
            (
                await db.scalars(
                    select(OneTimeKey.key_id).where(
                        OneTimeKey.device_id == device_id, OneTimeKey.key_id.in_(list(body.one_time_keys))
                    )
                )
            ).all()
        )
        for key_id, obj in body.one_time_keys.items():
            if key_id not in existing:  # re-uploads after a lost answer are harmless
                db.add(OneTimeKey(device_id=device_id, key_id=key_id, key_json=json.dumps(obj), created_at=utcnow()))
    if body.fallback_key:
        assert current is not None
        ((key_id, obj),) = body.fallback_key.items()
        _check_key_obj(obj, current.ed25519, user_id, device_id, "fallback key")
        row = await db.get(FallbackKey, device_id)
        if row is None:
            db.add(FallbackKey(device_id=device_id, key_id=key_id[:64], key_json=json.dumps(obj), used=False))
        elif row.key_id != key_id:
            row.key_id, row.key_json, row.used = key_id[:64], json.dumps(obj), False
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise ApiError(ErrorCode.INVALID_KEYS, "keys changed concurrently; retry", status=409) from None
    if new_device:
        await announce_device_change(db, caller.user, bus=bus)
    return await counts(db, device_id)


async def counts(db: AsyncSession, device_id: str) -> KeyCounts:
    n = (await db.execute(select(func.count()).where(OneTimeKey.device_id == device_id))).scalar_one()
    fb = await db.get(FallbackKey, device_id)
    return KeyCounts(one_time_key_count=int(n), fallback_unused=fb is not None and not fb.used)


async def _visible_users(db: AsyncSession, caller: Caller, usernames: list[str]) -> dict[str, User]:
    """username → user, for the caller and users who share a chat with the caller; others are absent."""
    names = list(dict.fromkeys(u.removeprefix("@").lower() for u in usernames))
    users = (await db.scalars(select(User).where(User.username.in_(names)))).all()
    allowed = set(await users_sharing_chats(db, caller.user.id)) | {caller.user.id}
    return {u.username: u for u in users if u.id in allowed and u.deactivated_at is None}


async def query(db: AsyncSession, caller: Caller, usernames: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    users = await _visible_users(db, caller, usernames)
    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in users}
    if not users:
        return out
    by_id = {u.id: u.username for u in users.values()}
    rows = (await db.scalars(select(DeviceKeys).where(DeviceKeys.user_id.in_(list(by_id))))).all()
    for row in rows:
        out[by_id[row.user_id]][row.device_id] = json.loads(row.keys_json)
    return out


async def claim(
    db: AsyncSession, caller: Caller, wanted: dict[str, list[str]], *, bus: LocalBus | RedisBus
) -> tuple[dict[str, dict[str, dict[str, Any]]], list[str]]:
    users = await _visible_users(db, caller, list(wanted))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    fallback_used: list[str] = []
    low: list[str] = []
    for raw_name, device_ids in wanted.items():
        user = users.get(raw_name.removeprefix("@").lower())
        if user is None:
            continue
        known = set(
            (
                await db.scalars(
                    select(DeviceKeys.device_id).where(
                        DeviceKeys.user_id == user.id, DeviceKeys.device_id.in_(device_ids[:100])
                    )
                )
            ).all()
        )
        for device_id in device_ids[:100]:
            if device_id not in known:
                continue
            got = await _claim_one(db, device_id)
            if got is None:
                fb = await db.get(FallbackKey, device_id)
                if fb is None:
                    continue
                fb.used = True
                await db.commit()
                got = (fb.key_id, json.loads(fb.key_json))
                fallback_used.append(f"{user.username}/{device_id}")
            out.setdefault(user.username, {})[device_id] = {got[0]: got[1]}
            left = (await db.execute(select(func.count()).where(OneTimeKey.device_id == device_id))).scalar_one()
            if int(left) < ONE_TIME_KEYS_LOW_WATER:
                low.append(device_id)
    for device_id in low:
        await notify_device(device_id, frames.keys_low_frame(device_id), bus=bus)
    return out, fallback_used


async def _claim_one(db: AsyncSession, device_id: str) -> tuple[str, dict[str, Any]] | None:
    """Take one one-time key. Whoever deletes the row owns the key, so two claims never share one."""
    for _ in range(20):
        row = (
            await db.execute(
                select(OneTimeKey.key_id, OneTimeKey.key_json)
                .where(OneTimeKey.device_id == device_id)
                .order_by(OneTimeKey.created_at, OneTimeKey.key_id)
                .limit(1)
            )
        ).first()
        if row is None:
            return None  # (no rollback: it would expire the caller's loaded rows)
        gone = await db.execute(
            delete(OneTimeKey).where(OneTimeKey.device_id == device_id, OneTimeKey.key_id == row.key_id)
        )
        await db.commit()
        if gone.rowcount == 1:  # type: ignore[attr-defined]
            return row.key_id, json.loads(row.key_json)
    return None


async def send_to_device(
    db: AsyncSession,
    caller: Caller,
    type_: str,
    messages: dict[str, dict[str, dict[str, Any]]],
    *,
    bus: LocalBus | RedisBus,
) -> int:
    users = await _visible_users(db, caller, list(messages))
    now = utcnow()
    rows: list[ToDeviceMessage] = []
    for raw_name, per_device in messages.items():
        user = users.get(raw_name.removeprefix("@").lower())
        if user is None:
            raise ApiError(ErrorCode.USER_NOT_FOUND, "no such user among your contacts", {"username": raw_name[:64]})
        devices = set((await db.scalars(select(DeviceKeys.device_id).where(DeviceKeys.user_id == user.id))).all())
        for device_id, content in per_device.items():
            targets = devices if device_id == "*" else ({device_id} & devices)
            for target in targets:
                if target == caller.claims.device_id:
                    continue
                rows.append(
                    ToDeviceMessage(
                        recipient_device=target,
                        sender_user_id=caller.user.id,
                        sender_device=caller.claims.device_id,
                        type=type_,
                        content=json.dumps(content),
                        created_at=now,
                        expires_at=now + timedelta(days=TO_DEVICE_TTL_DAYS),
                    )
                )
    db.add_all(rows)
    await db.commit()
    for row in rows:
        frame = to_device_frame(row, caller.user.username)
        await bus.publish(BusEvent(kind="device", frame=frame, seq=row.id, session_ids=[row.recipient_device]))
    return len(rows)


def to_device_out(row: ToDeviceMessage, sender: str) -> ToDeviceOut:
    return ToDeviceOut(
        id=row.id,
        type=row.type,
        sender=sender,
        sender_id=row.sender_user_id,
        sender_device=row.sender_device,
        content=json.loads(row.content),
        created_at=row.created_at,
    )


def to_device_frame(row: ToDeviceMessage, sender: str) -> str:
    return to_device_frame_from_out(to_device_out(row, sender))


def to_device_frame_from_out(item: ToDeviceOut) -> str:
    return frames.to_device_frame(item)


async def pending(db: AsyncSession, device_id: str, after: int = 0, limit: int = 500) -> list[ToDeviceOut]:
    rows = (
        await db.execute(
            select(ToDeviceMessage, User.username)
            .join(User, User.id == ToDeviceMessage.sender_user_id)
            .where(
                ToDeviceMessage.recipient_device == device_id,
                ToDeviceMessage.id > after,
                ToDeviceMessage.expires_at > utcnow(),
            )
            .order_by(ToDeviceMessage.id)
            .limit(limit)
        )
    ).all()
    return [to_device_out(m, name) for m, name in rows]


async def acknowledge(db: AsyncSession, device_id: str, up_to: int, only: set[int] | None = None) -> int:
    """Forget this device's messages up to ``up_to``. With ``only`` (the ids a socket really sent), a
    lower id that committed late and was not delivered yet is kept: ids are unique, not commit-ordered."""
    query = delete(ToDeviceMessage).where(ToDeviceMessage.recipient_device == device_id, ToDeviceMessage.id <= up_to)
    if only is not None:
        ids = [i for i in only if i <= up_to]
        if not ids:
            return 0
        query = query.where(ToDeviceMessage.id.in_(ids))
    gone = await db.execute(query)
    await db.commit()
    return int(gone.rowcount)  # type: ignore[attr-defined]


async def notify_device(device_id: str, frame: str, *, bus: LocalBus | RedisBus) -> None:
    await bus.publish(BusEvent(kind="device", frame=frame, session_ids=[device_id]))


async def announce_device_change(db: AsyncSession, user: User, *, bus: LocalBus | RedisBus) -> None:
    """Tell users who share a chat (and the user's own devices) that this user's device list changed."""
    watchers = await users_sharing_chats(db, user.id)
    frame = frames.devices_changed_frame(user.username, user.id)
    await bus.publish(BusEvent(kind="presence", frame=frame, user_ids=[*watchers, user.id]))


async def forget_devices(
    session_ids: list[str], *, sessions: async_sessionmaker[AsyncSession], bus: LocalBus | RedisBus
) -> None:
    """A revoked session's device leaves the directory: keys, one-time keys and its queue."""
    async with sessions() as db:
        rows = (
            await db.execute(
                select(DeviceSession.device_id, DeviceSession.user_id).where(DeviceSession.id.in_(session_ids))
            )
        ).all()
        device_ids = [r.device_id for r in rows]
        if not device_ids:
            return
        had_keys = set((await db.scalars(select(DeviceKeys.user_id).where(DeviceKeys.device_id.in_(device_ids)))).all())
        for model in (OneTimeKey, FallbackKey):
            await db.execute(delete(model).where(model.device_id.in_(device_ids)))
        await db.execute(delete(ToDeviceMessage).where(ToDeviceMessage.recipient_device.in_(device_ids)))
        await db.execute(delete(DeviceKeys).where(DeviceKeys.device_id.in_(device_ids)))
        await db.commit()
        for user_id in had_keys:
            user = await db.get(User, user_id)
            if user is not None:
                await announce_device_change(db, user, bus=bus)
