"""JWT signing keys: RS256 access tokens with kid, pinned verification, JWKS and rotation.

Keys live in the database (private halves sealed with the server secret) so every worker signs and
verifies with the same ring. A rotated-out key stays published until the last token it signed expires.

Rotation publishes, then activates: a verifier that reads any worker's JWKS must know a key before it
sees a token signed with it. Each worker reads its ring again before signing or serving JWKS when the
ring is older than ``propagation_s`` (whether or not the bus said anything, so also without Redis and
across hosts). A new key goes into the database with no activation time; once it is committed, it gets
one ``propagation_s`` later, by which time every worker's ring, and so every JWKS, holds it. Until then
every worker signs with the key it used before.
"""

import asyncio
import dataclasses
import json
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from melo_protocol.wire import ErrorCode
from server.core.errors import ApiError
from server.core.secrets import SecretBox
from server.db.models import ServerState, SigningKey
from server.db.types import utcnow

ALGORITHM = "RS256"
ACTIVE_KID_STATE = "jwt.active_kid"
ACCESS_TYPE = "access"
REQUIRED_CLAIMS = ["exp", "iat", "jti", "sub", "sid", "did", "aud", "iss", "typ"]
# an old key stays published this long after the last token it signed expires (clock skew, leeway)
RETIRE_MARGIN_S = 60
_UNKNOWN_KID_RETRY_S = 1.0  # how long a kid the database does not hold is not looked up again
_UNKNOWN_KID_CACHE = 10_000


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    session_id: str
    device_id: str
    jti: str
    expires_at: int


@dataclass
class _LoadedKey:
    kid: str
    private: Any
    public: Any
    public_jwk: dict[str, Any]
    activates_at: datetime | None  # None: published, not yet to be used
    retired_at: datetime | None


def signing_kid(keys: Iterable[tuple[str, datetime | None, datetime | None]], now: datetime) -> str | None:
    """The key to sign with at ``now``, of (kid, activates_at, retired_at): the one activated last."""
    due = [
        (activates, kid)
        for kid, activates, retired in keys
        if activates is not None and activates <= now and (retired is None or retired > now)
    ]
    return max(due)[1] if due else None


def unauthorized(code: ErrorCode, message: str) -> ApiError:
    """A refused access token (``invalid_token``, ``token_expired``: both 401)."""
    return ApiError(code, message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class JwtKeyRing:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        *,
        issuer: str,
        audience: str,
        access_ttl_s: int,
        propagation_s: float,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self.issuer = issuer
        self.audience = audience
        self.access_ttl_s = access_ttl_s
        self.propagation_s = propagation_s
        self._keys: dict[str, _LoadedKey] = {}
        self._loaded_at = float("-inf")  # monotonic time at which the last load began
        self._lock = asyncio.Lock()
        self._unknown_kids: dict[str, float] = {}

    # -- loading ---------------------------------------------------------------------------------------
    async def ensure(self) -> None:
        """Make the first key on first start (race-safe across workers), then load the ring."""
        async with self._sessions() as db:
            state = await db.get(ServerState, ACTIVE_KID_STATE)
            if state is None:
                row = self._new_key_row()
                row.activates_at = row.created_at  # nothing was signed or published before it
                db.add(row)
                db.add(ServerState(key=ACTIVE_KID_STATE, value=row.kid))
                try:
                    await db.commit()
                except IntegrityError:
                    await db.rollback()  # another worker won; use its key
        await self.reload()

    async def reload(self, *, unless_loaded: str | None = None, unless_younger: float | None = None) -> None:
        """Load the ring from the database. Skip it if ``unless_loaded`` arrived meanwhile, or if the ring
        is younger than ``unless_younger`` seconds by then (concurrent callers reload once)."""
        async with self._lock:
            if unless_loaded is not None and unless_loaded in self._keys:
                return
            started = time.monotonic()
            if unless_younger is not None and started - self._loaded_at <= unless_younger:
                return
            now = utcnow()
            async with self._sessions() as db:
                rows = (await db.scalars(select(SigningKey).where(SigningKey.kind == "jwt"))).all()
            keys: dict[str, _LoadedKey] = {}
            for row in rows:
                if row.retired_at is not None and row.retired_at <= now:
                    continue
                if row.kid in self._keys:  # key material never changes once made: keep the parsed one
                    keys[row.kid] = dataclasses.replace(
                        self._keys[row.kid], activates_at=row.activates_at, retired_at=row.retired_at
                    )
                    continue
                try:
                    pem = self._box.open(row.private_sealed, context=row.kid.encode())
                except InvalidTag:
                    raise RuntimeError(
                        f"cannot open signing key {row.kid}: this server's secret (MELO_SECRET_KEY or "
                        "secret.key in the data dir) is not the one that sealed it"
                    ) from None
                private = serialization.load_pem_private_key(pem, password=None)
                keys[row.kid] = _LoadedKey(
                    row.kid, private, private.public_key(), json.loads(row.public_jwk), row.activates_at, row.retired_at
                )
            self._keys = keys
            # the start, not the end: a key committed while the query ran may be missing from this load
            self._loaded_at = started

    async def refresh_if_stale(self) -> None:
        """Before signing or serving JWKS: a ring loaded more than ``propagation_s`` ago is read again."""
        if time.monotonic() - self._loaded_at > self.propagation_s:
            await self.reload(unless_younger=self.propagation_s)

    def _new_key_row(self) -> SigningKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = "jwt-" + utcnow().strftime("%Y%m%d") + "-" + secrets.token_hex(4)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
        jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
        return SigningKey(
            kid=kid,
            kind="jwt",
            created_at=utcnow(),
            algorithm=ALGORITHM,
            private_sealed=self._box.seal(pem, context=kid.encode()),
            public_jwk=json.dumps(jwk),
        )

    # -- rotation --------------------------------------------------------------------------------------
    async def rotate(self) -> SigningKey:
        """A new key, published now and used from ``propagation_s`` after it is committed; older keys
        retire when the last token they can have signed expires.

        Two transactions: the key goes in with no activation time (every worker publishes it as its
        ring comes round), then, once committed, it gets its activation time. Should the second step
        never happen, the key stays published and unused, and the next rotation retires it.
        """
        row = self._new_key_row()
        async with self._sessions() as db, db.begin():
            db.add(row)
        activates_at = utcnow() + timedelta(seconds=self.propagation_s)
        # the last worker to hear of the activation signs with an old key up to propagation_s after it
        retire_at = activates_at + timedelta(seconds=self.propagation_s + self.access_ttl_s + RETIRE_MARGIN_S)
        async with self._sessions() as db, db.begin():
            await db.execute(
                update(SigningKey).where(SigningKey.kid == row.kid).values(activates_at=activates_at, retired_at=None)
            )
            await db.execute(
                update(SigningKey)
                .where(SigningKey.kind == "jwt", SigningKey.kid != row.kid, SigningKey.retired_at.is_(None))
                .values(retired_at=retire_at)
            )
            state = await db.get(ServerState, ACTIVE_KID_STATE)  # the newest key (its age paces rotation)
            if state is None:
                db.add(ServerState(key=ACTIVE_KID_STATE, value=row.kid))
            else:
                state.value = row.kid
        row.activates_at = activates_at
        await self.reload()
        return row

    async def list_keys(self) -> list[SigningKey]:
        async with self._sessions() as db:
            return list((await db.scalars(select(SigningKey).order_by(SigningKey.created_at))).all())

    @property
    def active_kid(self) -> str | None:
        """The key this worker signs with now (as of its last load)."""
        return signing_kid(((k.kid, k.activates_at, k.retired_at) for k in self._keys.values()), utcnow())

    # -- tokens ----------------------------------------------------------------------------------------
    async def sign_access(self, *, user_id: int, session_id: str, device_id: str) -> str:
        await self.refresh_if_stale()
        kid = self.active_kid
        if kid is None:  # the only active key retired since the last load: a newer one is in the database
            await self.reload()
            kid = self.active_kid
        if kid is None:
            raise RuntimeError("no JWT signing key is active: rotate the keys (melo-server keys rotate)")
        key = self._keys[kid]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "sid": session_id,
            "did": device_id,
            "typ": ACCESS_TYPE,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.access_ttl_s,
        }
        return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "JWT"})

    async def verify_access(self, token: str) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized(ErrorCode.INVALID_TOKEN, "malformed access token") from None
        if header.get("alg") != ALGORITHM:
            raise unauthorized(ErrorCode.INVALID_TOKEN, "unexpected token algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise unauthorized(ErrorCode.INVALID_TOKEN, "access token has no key id")
        key = self._keys.get(kid)
        if key is None:
            key = await self._load_unknown(kid)  # a key rotated on another worker or host
        if key is None:
            raise unauthorized(ErrorCode.INVALID_TOKEN, "unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key.public,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized(ErrorCode.TOKEN_EXPIRED, "access token expired") from None
        except jwt.PyJWTError:
            raise unauthorized(ErrorCode.INVALID_TOKEN, "invalid access token") from None
        if claims.get("typ") != ACCESS_TYPE:
            raise unauthorized(ErrorCode.INVALID_TOKEN, "not an access token")
        try:
            return AccessClaims(
                user_id=int(claims["sub"]),
                session_id=str(claims["sid"]),
                device_id=str(claims["did"]),
                jti=str(claims["jti"]),
                expires_at=int(claims["exp"]),
            )
        except (TypeError, ValueError):
            raise unauthorized(ErrorCode.INVALID_TOKEN, "invalid access token claims") from None

    async def _load_unknown(self, kid: str) -> _LoadedKey | None:
        """Reload the ring when the database holds ``kid``: one primary-key look-up, so made-up kids
        cost no more than that (and the same made-up kid is not looked up again for a while)."""
        now = time.monotonic()
        if len(kid) > 64 or self._unknown_kids.get(kid, 0.0) > now:
            return None
        async with self._sessions() as db:
            found = await db.scalar(select(SigningKey.kid).where(SigningKey.kid == kid, SigningKey.kind == "jwt"))
        if found is not None:
            await self.reload(unless_loaded=kid)
            key = self._keys.get(kid)
            if key is not None:
                return key
        # unknown, or retired (its tokens have all expired)
        if len(self._unknown_kids) >= _UNKNOWN_KID_CACHE:
            self._unknown_kids = {k: t for k, t in self._unknown_kids.items() if t > now}
            if len(self._unknown_kids) >= _UNKNOWN_KID_CACHE:
                self._unknown_kids.clear()
        self._unknown_kids[kid] = now + _UNKNOWN_KID_RETRY_S
        return None

    async def jwks(self) -> dict[str, Any]:
        """Every key not yet retired, those waiting for their activation time included."""
        await self.refresh_if_stale()
        return {"keys": [k.public_jwk for k in self._keys.values()]}
