"""Accounts on every database: registration (open, closed, token), login, logout, profile, avatar, look-up."""

import io
import secrets
import string
from datetime import timedelta
from typing import Any

import httpx
from PIL import Image, PngImagePlugin
from sqlalchemy import update

from server.db.models import RegistrationToken
from server.db.types import utcnow
from tests.conftest import Api, bearer

PASSWORD = "correct horse battery"


def assert_error(r: httpx.Response, status: int | tuple[int, ...], code: str | None = None) -> dict[str, Any]:
    """The response is the one error shape, with this status (and code)."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], dict)
    if code is not None:
        assert err["code"] == code, err
    return err


def png_bytes(size: tuple[int, int] = (64, 48), color: tuple[int, ...] = (200, 30, 90, 255),
              text: dict[str, str] | None = None, mode: str = "RGBA") -> bytes:
    img = Image.new(mode, size, color)
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_text(k, v)
    out = io.BytesIO()
    img.save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def jpeg_with_exif(marker: str, size: tuple[int, int] = (80, 60)) -> bytes:
    img = Image.new("RGB", size, (10, 120, 240))
    exif = Image.Exif()
    exif[0x010E] = marker  # ImageDescription
    exif[0x013B] = marker  # Artist
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS IFD: a location to leak
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def webp_bytes(size: tuple[int, int] = (40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(out, format="WEBP")
    return out.getvalue()


async def admin_put_mode(api: Api, admin: dict[str, Any], mode: str) -> None:
    r = await api.client.put("/v1/admin/registration", json={"mode": mode}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    assert r.json() == {"mode": mode}


# --- registration -------------------------------------------------------------------------------


async def test_register_returns_tokens_and_canonical_name(api: Api) -> None:
    name = api.name("Reg")
    r = await api.client.post("/v1/auth/register", json={"username": name, "password": PASSWORD,
                                                         "device_name": "laptop"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user"]["username"] == name.lower()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert body["access_token"] and body["refresh_token"] and body["session_id"] and body["device_id"]
    me = await api.client.get("/v1/account", headers=bearer(body))
    assert me.status_code == 200 and me.json()["is_admin"] is False


async def test_username_unique_case_insensitively(api: Api) -> None:
    base = api.name("bob")
    await api.register(base.capitalize())
    for variant in (base, base.upper(), base.capitalize()):
        r = await api.client.post("/v1/auth/register", json={"username": variant, "password": PASSWORD})
        assert_error(r, 409, "username_taken")


async def test_username_rules(api: Api) -> None:
    alphabet = string.ascii_lowercase + string.digits
    ok = ["".join(secrets.choice(alphabet) for _ in range(3)), "a" * 26 + secrets.token_hex(3),
          "a.b-c_" + secrets.token_hex(4), "-._" + secrets.token_hex(2)]
    for name in ok:
        r = await api.client.post("/v1/auth/register", json={"username": name, "password": PASSWORD})
        assert r.status_code == 201, (name, r.text)
    bad = ["ab", "a" * 33, "has space", "semi;colon", "slash/x", "at@sign", "", "plus+sign", "émile", "tab\tx"]
    for name in bad:
        r = await api.client.post("/v1/auth/register", json={"username": name, "password": PASSWORD})
        # over 64 characters the wire model refuses it (422); otherwise the server's rule does (400)
        assert_error(r, (400, 422))
        if len(name) <= 64:
            assert r.json()["error"]["code"] == "invalid_username", (name, r.text)


async def test_weak_passwords_refused(api: Api) -> None:
    name = api.name("weak")
    assert len(name) >= 10
    for password in ("short", "123456789", name, name.upper(), f"  {name} ", "ten chars\x07"):
        r = await api.client.post("/v1/auth/register", json={"username": name, "password": password})
        assert_error(r, 400, "weak_password")
        assert password not in r.text
    # the name is still free: nothing was created by the refusals
    await api.register(name, "a long enough passphrase")


async def test_password_equal_to_username_refused(api: Api) -> None:
    name = "samename" + api.name("").replace("_", "")[-8:]
    assert len(name) >= 10
    for password in (name, name.upper(), name.capitalize()):
        r = await api.client.post("/v1/auth/register", json={"username": name, "password": password})
        assert_error(r, 400, "weak_password")


async def test_registration_modes(api: Api) -> None:
    admin = await api.make_admin()
    await admin_put_mode(api, admin, "closed")
    r = await api.client.get("/v1/admin/registration", headers=bearer(admin))
    assert r.json() == {"mode": "closed"}
    name = api.name("closed")
    r = await api.client.post("/v1/auth/register", json={"username": name, "password": PASSWORD})
    assert_error(r, 403, "registration_closed")
    # existing users still sign in while registration is closed
    assert (await api.login(admin["user"]["username"])).status_code == 200

    await admin_put_mode(api, admin, "token")
    r = await api.client.post("/v1/auth/register", json={"username": name, "password": PASSWORD})
    assert_error(r, 403, "registration_token_required")
    r = await api.client.post("/v1/auth/register", json={"username": name, "password": PASSWORD,
                                                         "registration_token": "not-a-real-token"})
    assert_error(r, 403, "registration_token_invalid")

    await admin_put_mode(api, admin, "open")
    await api.register(name)
    r = await api.client.put("/v1/admin/registration", json={"mode": "sometimes"}, headers=bearer(admin))
    assert_error(r, 422, "validation_error")


async def _make_token(api: Api, admin: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = await api.client.post("/v1/admin/registration-tokens", json=body, headers=bearer(admin))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _token_row(api: Api, admin: dict[str, Any], token: str) -> dict[str, Any]:
    r = await api.client.get("/v1/admin/registration-tokens", headers=bearer(admin))
    assert r.status_code == 200
    rows = [t for t in r.json()["tokens"] if t["token"] == token]
    assert len(rows) == 1
    return rows[0]


async def test_registration_token_max_uses(api: Api) -> None:
    admin = await api.make_admin()
    await admin_put_mode(api, admin, "token")
    tok = await _make_token(api, admin, max_uses=2, expires_in_seconds=3600)
    assert tok["uses"] == 0 and tok["max_uses"] == 2 and tok["revoked"] is False
    assert tok["expires_at"] is not None

    first = api.name("tk")
    await api.register(first, registration_token=tok["token"])
    # a registration that fails (taken name, weak password, bad name) does not spend a use
    r = await api.client.post("/v1/auth/register", json={"username": first.upper(), "password": PASSWORD,
                                                         "registration_token": tok["token"]})
    assert_error(r, 409, "username_taken")
    r = await api.client.post("/v1/auth/register", json={"username": api.name("tk"), "password": "short",
                                                         "registration_token": tok["token"]})
    assert_error(r, 400, "weak_password")
    r = await api.client.post("/v1/auth/register", json={"username": "x", "password": PASSWORD,
                                                         "registration_token": tok["token"]})
    assert_error(r, 400, "invalid_username")
    assert (await _token_row(api, admin, tok["token"]))["uses"] == 1

    await api.register(api.name("tk"), registration_token=tok["token"])
    assert (await _token_row(api, admin, tok["token"]))["uses"] == 2
    # the (max+1)th use
    late = api.name("tk")
    r = await api.client.post("/v1/auth/register", json={"username": late, "password": PASSWORD,
                                                         "registration_token": tok["token"]})
    assert_error(r, 403, "registration_token_invalid")
    assert (await _token_row(api, admin, tok["token"]))["uses"] == 2
    assert (await api.login(late)).status_code == 401


async def test_registration_token_expiry(api: Api) -> None:
    admin = await api.make_admin()
    await admin_put_mode(api, admin, "token")
    tok = await _make_token(api, admin, expires_in_seconds=60)
    # move its expiry into the past rather than waiting for it
    async with api.state.sessions() as db:
        await db.execute(update(RegistrationToken).where(RegistrationToken.token == tok["token"])
                         .values(expires_at=utcnow() - timedelta(seconds=1)))
        await db.commit()
    r = await api.client.post("/v1/auth/register", json={"username": api.name("exp"), "password": PASSWORD,
                                                         "registration_token": tok["token"]})
    assert_error(r, 403, "registration_token_invalid")
    assert (await _token_row(api, admin, tok["token"]))["uses"] == 0
    # out-of-range lifetimes and use counts are refused
    for body in ({"expires_in_seconds": 0}, {"expires_in_seconds": -5}, {"max_uses": 0},
                 {"max_uses": "many"}):
        r = await api.client.post("/v1/admin/registration-tokens", json=body, headers=bearer(admin))
        assert_error(r, 422, "validation_error")


async def test_registration_token_revoke(api: Api) -> None:
    admin = await api.make_admin()
    await admin_put_mode(api, admin, "token")
    tok = await _make_token(api, admin)  # unlimited, never expires
    assert tok["max_uses"] is None and tok["expires_at"] is None
    await api.register(api.name("rv"), registration_token=tok["token"])
    r = await api.client.delete(f"/v1/admin/registration-tokens/{tok['token']}", headers=bearer(admin))
    assert r.status_code == 200, r.text
    assert r.json()["revoked"] is True
    r = await api.client.post("/v1/auth/register", json={"username": api.name("rv"), "password": PASSWORD,
                                                         "registration_token": tok["token"]})
    assert_error(r, 403, "registration_token_invalid")
    r = await api.client.delete("/v1/admin/registration-tokens/no-such-token", headers=bearer(admin))
    assert_error(r, 404, "registration_token_not_found")
    # a token is only good in token mode's sense: in open mode it is simply not needed
    await admin_put_mode(api, admin, "open")
    await api.register(api.name("rv"))


# --- login and logout ---------------------------------------------------------------------------


async def test_login_and_logout(api: Api) -> None:
    name = api.name("lo")
    reg = await api.register(name)
    r = await api.login(name.upper())
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["user"]["username"] == name
    assert tokens["session_id"] != reg["session_id"]

    assert_error(await api.login(name, "wrong password!"), 401, "invalid_credentials")
    assert_error(await api.login(api.name("ghost")), 401, "invalid_credentials")
    assert_error(await api.login("no such user at all!"), 401, "invalid_credentials")

    r = await api.client.post("/v1/auth/logout", headers=bearer(tokens))
    assert r.status_code == 204
    assert_error(await api.client.get("/v1/account", headers=bearer(tokens)), 401)
    r = await api.client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_error(r, 401)
    # the other session is untouched
    assert (await api.client.get("/v1/account", headers=bearer(reg))).status_code == 200
    assert_error(await api.client.post("/v1/auth/logout"), 401, "unauthenticated")


# --- profile ------------------------------------------------------------------------------------


async def test_profile_update(api: Api) -> None:
    name = api.name("pr")
    tokens = await api.register(name)
    h = bearer(tokens)
    r = await api.client.patch("/v1/account/profile",
                               json={"display_name": "  Ada Lovelace ", "bio": "line one\nline two ✨"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "Ada Lovelace"
    assert r.json()["bio"] == "line one\nline two ✨"
    # only the fields sent change
    r = await api.client.patch("/v1/account/profile", json={"bio": "b" * 280}, headers=h)
    assert r.status_code == 200
    assert r.json()["display_name"] == "Ada Lovelace" and r.json()["bio"] == "b" * 280
    other = await api.register()
    r = await api.client.get(f"/v1/users/{name.upper()}", headers=bearer(other))
    assert r.status_code == 200
    assert r.json()["display_name"] == "Ada Lovelace" and r.json()["bio"] == "b" * 280
    assert r.json()["username"] == name
    # null or blank clears
    r = await api.client.patch("/v1/account/profile", json={"display_name": None, "bio": "   "}, headers=h)
    assert r.status_code == 200
    assert r.json()["display_name"] is None and r.json()["bio"] is None
    assert_error(await api.client.patch("/v1/account/profile", json={"bio": "x"}), 401)


async def _profile(api: Api, tokens: dict[str, Any]) -> dict[str, Any]:
    r = await api.client.get("/v1/account", headers=bearer(tokens))
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


async def test_profile_limits_and_control_characters(api: Api) -> None:
    tokens = await api.register()
    h = bearer(tokens)
    r = await api.client.patch("/v1/account/profile", json={"display_name": "Kept", "bio": "kept bio"}, headers=h)
    assert r.status_code == 200
    before = await _profile(api, tokens)

    assert_error(await api.client.patch("/v1/account/profile", json={"bio": "b" * 281}, headers=h),
                 (400, 422))
    assert_error(await api.client.patch("/v1/account/profile", json={"display_name": "d" * 65}, headers=h),
                 (400, 422))
    for bad in ("nul\x00here", "bell\x07", "esc\x1b[31mred", "rtl\u202eevil", "del\x7f", "c1\x9b31m"):
        for field in ("display_name", "bio"):
            r = await api.client.patch("/v1/account/profile", json={field: bad}, headers=h)
            # NUL is refused by the wire model for every request (422), the rest by the profile rules (400)
            assert_error(r, 422 if "\x00" in bad else 400, "validation_error")
    # a newline is fine in a bio but not in a display name
    assert_error(await api.client.patch("/v1/account/profile", json={"display_name": "two\nlines"}, headers=h),
                 400, "validation_error")
    assert await _profile(api, tokens) == before


# --- avatar -------------------------------------------------------------------------------------


async def test_avatar_reencoded_and_metadata_stripped(api: Api) -> None:
    name = api.name("av")
    tokens = await api.register(name)
    h = bearer(tokens)
    viewer = bearer(await api.register())
    assert_error(await api.client.get(f"/v1/users/{name}/avatar", headers=viewer), 404, "avatar_not_set")

    marker = "SECRET-LOCATION-MARKER-42"
    upload = png_bytes(text={"Comment": marker, "Author": marker})
    assert marker.encode() in upload
    r = await api.client.put("/v1/account/avatar", content=upload, headers={**h, "Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    etag = r.json()["avatar_etag"]
    assert etag

    r = await api.client.get(f"/v1/users/{name}/avatar", headers=viewer)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.headers["etag"] == f'"{etag}"'
    assert marker.encode() not in r.content
    assert b"tEXt" not in r.content and b"iTXt" not in r.content and b"zTXt" not in r.content
    served = Image.open(io.BytesIO(r.content))
    assert served.format == "PNG" and served.size == (64, 48)
    assert not getattr(served, "text", {}) and "exif" not in served.info
    assert served.convert("RGBA").getpixel((5, 5)) == (200, 30, 90, 255)

    r304 = await api.client.get(f"/v1/users/{name}/avatar", headers={**viewer, "If-None-Match": f'"{etag}"'})
    assert r304.status_code == 304 and r304.content == b""
    assert r304.headers["etag"] == f'"{etag}"'
    r = await api.client.get(f"/v1/users/{name}/avatar",
                             headers={**viewer, "If-None-Match": '"other", ' + f'"{etag}"'})
    assert r.status_code == 304
    r = await api.client.get(f"/v1/users/{name}/avatar", headers={**viewer, "If-None-Match": '"stale"'})
    assert r.status_code == 200 and r.content

    # JPEG with EXIF (including GPS) comes back without any
    jpeg = jpeg_with_exif(marker)
    assert Image.open(io.BytesIO(jpeg)).getexif()
    r = await api.client.put("/v1/account/avatar", content=jpeg, headers={**h, "Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    new_etag = r.json()["avatar_etag"]
    assert new_etag != etag
    r = await api.client.get(f"/v1/users/{name}/avatar", headers=viewer)
    assert r.headers["content-type"] == "image/jpeg" and r.headers["etag"] == f'"{new_etag}"'
    assert marker.encode() not in r.content and b"Exif" not in r.content
    served = Image.open(io.BytesIO(r.content))
    assert served.format == "JPEG" and not served.getexif() and "exif" not in served.info
    # the old ETag no longer matches
    r = await api.client.get(f"/v1/users/{name}/avatar", headers={**viewer, "If-None-Match": f'"{etag}"'})
    assert r.status_code == 200

    r = await api.client.put("/v1/account/avatar", content=webp_bytes(),
                             headers={**h, "Content-Type": "image/webp"})
    assert r.status_code == 200, r.text
    r = await api.client.get(f"/v1/users/{name}/avatar", headers=viewer)
    assert r.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(r.content)).format == "WEBP"

    # large images are scaled down to fit 512x512
    r = await api.client.put("/v1/account/avatar", content=png_bytes((1500, 700), (0, 0, 0)),
                             headers={**h, "Content-Type": "image/png"})
    assert r.status_code == 200
    r = await api.client.get(f"/v1/users/{name}/avatar", headers=viewer)
    assert max(Image.open(io.BytesIO(r.content)).size) == 512

    r = await api.client.delete("/v1/account/avatar", headers=h)
    assert r.status_code == 200 and r.json()["avatar_etag"] is None
    assert_error(await api.client.get(f"/v1/users/{name}/avatar", headers=viewer), 404, "avatar_not_set")
    assert_error(await api.client.get(f"/v1/users/{name}/avatar"), 401)


async def test_avatar_of_unusual_image_modes(sqlite_api: Api) -> None:
    """Every mode a PNG, JPEG or WebP can carry decodes and re-encodes, never a 5xx."""
    api = sqlite_api
    h = bearer(await api.register())
    cases: list[tuple[str, str, Any]] = [
        ("PNG", "1", 1), ("PNG", "L", 128), ("PNG", "LA", (128, 20)), ("PNG", "P", 3),
        ("PNG", "I;16", 30000), ("PNG", "RGB", (1, 2, 3)),
        ("JPEG", "L", 100), ("JPEG", "CMYK", (1, 2, 3, 4)), ("WEBP", "RGBA", (1, 2, 3, 4)),
    ]
    for fmt, mode, color in cases:
        img = Image.new(mode, (20, 10), color)
        out = io.BytesIO()
        if fmt == "PNG" and mode == "P":
            img.info["transparency"] = 3
        img.save(out, format=fmt)
        ctype = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[fmt]
        r = await api.client.put("/v1/account/avatar", content=out.getvalue(),
                                 headers={**h, "Content-Type": ctype})
        assert r.status_code == 200, (fmt, mode, r.text)


async def test_user_lookup(api: Api) -> None:
    name = api.name("look")
    target = await api.register(name)
    viewer = bearer(await api.register())
    r = await api.client.get(f"/v1/users/{name}", headers=viewer)
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == target["user"]["id"] and body["username"] == name
    assert "password_hash" not in body and "is_admin" not in body
    r = await api.client.get(f"/v1/users/{name.upper()}", headers=viewer)
    assert r.status_code == 200 and r.json()["id"] == target["user"]["id"]
    assert_error(await api.client.get(f"/v1/users/{api.name('nobody')}", headers=viewer), 404, "user_not_found")
    assert_error(await api.client.get(f"/v1/users/{name}"), 401, "unauthenticated")
