"""Bad input: every one a 4xx in the one error shape, never a 5xx, and stored data unchanged."""

import asyncio
import io
import json
import os
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.conftest import Api, bearer
from tests.server.test_accounts import PASSWORD, assert_error, png_bytes

JSON = {"Content-Type": "application/json"}
BODY_LIMIT = 256 * 1024
AVATAR_LIMIT = 1024 * 1024


@pytest.fixture
async def raw(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the same app that reports a crash as the 500 it would be, not as an exception."""
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False, client=("127.0.0.1", 50001))
    async with httpx.AsyncClient(transport=transport, base_url="http://melo.test") as client:
        yield client


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body without Content-Length (httpx sends it chunked)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


async def account(client: httpx.AsyncClient, tokens: dict[str, Any]) -> dict[str, Any]:
    r = await client.get("/v1/account", headers=bearer(tokens))
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


async def avatar(client: httpx.AsyncClient, viewer: dict[str, Any], name: str) -> tuple[int, bytes, str | None]:
    r = await client.get(f"/v1/users/{name}/avatar", headers=bearer(viewer))
    return r.status_code, r.content, r.headers.get("etag")


# --- JSON bodies --------------------------------------------------------------------------------


async def test_malformed_json(api: Api, raw: httpx.AsyncClient) -> None:
    tokens = await api.register()
    before = await account(raw, tokens)
    bodies = [b"{", b'{"username": "abc", "password": }', b"not json", b"{'single': 'quotes'}",
              b'{"username": "abc"', b"\xff\xfe\x00garbage", b"[" * 100_000, b"[" * 5000 + b"]" * 5000,
              b'{"username": ' + b"9" * 5000 + b"}"]
    for body in bodies:
        for path in ("/v1/auth/register", "/v1/auth/login"):
            assert_error(await raw.post(path, content=body, headers=JSON), 400, "malformed_json")
        r = await raw.patch("/v1/account/profile", content=body, headers={**JSON, **bearer(tokens)})
        assert_error(r, 400, "malformed_json")
    assert await account(raw, tokens) == before


async def test_wrong_types_missing_and_unknown_fields(api: Api, raw: httpx.AsyncClient) -> None:
    name = api.name("types")
    bodies: list[Any] = [
        {"username": 123, "password": PASSWORD},
        {"username": name, "password": None},
        {"username": name, "password": 1234567890123},
        {"username": [name], "password": PASSWORD},
        {"username": {"$ne": None}, "password": PASSWORD},
        {"username": name, "password": PASSWORD, "is_admin": True},
        {"username": name, "password": PASSWORD, "registration_token": 5},
        {"username": name},
        {"password": PASSWORD},
        {},
        [name, PASSWORD],
        [],
        "a string",
        42,
        None,
        True,
    ]
    for body in bodies:
        for path in ("/v1/auth/register", "/v1/auth/login"):
            r = await raw.post(path, json=body)
            err = assert_error(r, 422, "validation_error")
            assert err["details"]["errors"], err
            assert PASSWORD not in r.text
    # nothing above created the account: the name is still free, and not an admin either
    tokens = await api.register(name)
    assert (await account(raw, tokens))["is_admin"] is False
    # no body at all, and a JSON body sent as text/plain
    assert_error(await raw.post("/v1/auth/register"), 422, "validation_error")
    r = await raw.post("/v1/auth/login", content=json.dumps({"username": name, "password": PASSWORD}),
                       headers={"Content-Type": "text/plain"})
    assert_error(r, 422, "validation_error")

    before = await account(raw, tokens)
    for body in ({"bio": 5}, {"display_name": ["x"]}, {"bio": "ok", "avatar_etag": "forged"},
                 {"username": "renamed"}, [], "bio"):
        r = await raw.patch("/v1/account/profile", json=body, headers=bearer(tokens))
        assert_error(r, 422, "validation_error")
    assert await account(raw, tokens) == before


async def test_validation_errors_do_not_echo_values(api: Api, raw: httpx.AsyncClient) -> None:
    secret = "hunter2-but-longer-" + os.urandom(6).hex()
    for body in ({"username": "x", "password": secret, "extra": secret},
                 {"username": ["x"], "password": secret},
                 {"username": "abc", "password": secret * 100}):
        r = await raw.post("/v1/auth/register", json=body)
        assert_error(r, 422, "validation_error")
        assert secret not in r.text and secret[:20] not in r.text
    r = await raw.post("/v1/auth/register", content=b'{"username": "abc", "password": "' + secret.encode() + b'"',
                       headers=JSON)
    assert_error(r, 400, "malformed_json")
    assert secret[:20] not in r.text


async def test_validation_errors_carry_the_limit_not_the_value(api: Api, raw: httpx.AsyncClient) -> None:
    """details.errors names the crossed limit (ctx: numbers only), so clients can say it in words."""
    tokens = await api.register()
    secret = "bio-" + os.urandom(8).hex()
    r = await raw.patch("/v1/account/profile", json={"bio": secret * 20}, headers=bearer(tokens))
    err = assert_error(r, 422, "validation_error")
    assert err["details"]["errors"] == [{"loc": ["body", "bio"], "type": "string_too_long",
                                         "msg": "String should have at most 280 characters",
                                         "ctx": {"max_length": 280}}]
    assert secret not in r.text
    chat = (await raw.post("/v1/chats", json={"kind": "group", "title": "limits"}, headers=bearer(tokens))).json()
    r = await raw.put(f"/v1/chats/{chat['id']}/timer", json={"seconds": 2}, headers=bearer(tokens))
    [error] = assert_error(r, 422, "validation_error")["details"]["errors"]
    assert (error["loc"], error["type"], error["ctx"]) == (["body", "seconds"], "greater_than_equal", {"ge": 5})


async def test_oversize_json_bodies(api: Api, raw: httpx.AsyncClient) -> None:
    tokens = await api.register()
    await raw.patch("/v1/account/profile", json={"bio": "before"}, headers=bearer(tokens))
    before = await account(raw, tokens)
    big = json.dumps({"username": "abcdef", "password": "x" * (BODY_LIMIT + 10)}).encode()
    big_profile = json.dumps({"bio": "y" * (BODY_LIMIT + 10)}).encode()
    for path, body, headers in (("/v1/auth/register", big, JSON), ("/v1/auth/login", big, JSON),
                                ("/v1/account/profile", big_profile, {**JSON, **bearer(tokens)})):
        method = "PATCH" if path == "/v1/account/profile" else "POST"
        # with Content-Length: refused before the body is read
        r = await raw.request(method, path, content=body, headers=headers)
        assert_error(r, 413, "payload_too_large")
        assert r.json()["error"]["details"] == {"max_bytes": BODY_LIMIT}
        # streamed without Content-Length: refused once it passes the limit
        r = await raw.request(method, path, content=chunked(body), headers=headers)
        assert "content-length" not in r.request.headers
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert_error(r, 413, "payload_too_large")
        assert r.json()["error"]["details"] == {"max_bytes": BODY_LIMIT}
    # a body just under the limit is parsed (and refused by the model: the bio is too long)
    under = json.dumps({"bio": "z" * (BODY_LIMIT - 100)}).encode()
    r = await raw.patch("/v1/account/profile", content=chunked(under), headers={**JSON, **bearer(tokens)})
    assert_error(r, 422, "validation_error")
    assert await account(raw, tokens) == before


# --- usernames ----------------------------------------------------------------------------------


LOOKALIKES = [
    "\u0430dmin",  # Cyrillic а
    "\u212aelvin",  # KELVIN SIGN, lower() is ASCII "k"
    "\uff42\uff4f\uff42\uff42\uff59",  # fullwidth
    "ab\u200dcd",  # zero-width joiner
    "ab\u200bcd",  # zero-width space
    "ab\x00cd",
    "ab\ncd",
    "abcd\n",
    "ab\rcd",
    "ab\u202ecd",  # RTL override
    "ab\U0001f600cd",  # emoji
    "\u0130stanbul",  # I WITH DOT, lower() is "i̇"
    "\ufb00oo",  # ﬀ ligature
    " abcd",
    "abcd ",
    "ab cd",
    "ab\tcd",
    "caf\u00e9",
    "cafe\u0301",
]


async def test_lookalike_and_control_usernames(api: Api, raw: httpx.AsyncClient) -> None:
    admin = await api.make_admin()
    viewer = bearer(await api.register())
    suffix = os.urandom(3).hex()
    # the ASCII twins exist; a look-alike must neither collide (409) nor be created
    await api.register("kelvin" + suffix)
    await api.register("admin" + suffix)
    await api.register("abcd" + suffix)
    stats = (await raw.get("/v1/admin/stats", headers=bearer(admin))).json()
    for base in LOOKALIKES:
        name = base + suffix if not base.endswith(("\n", " ")) else suffix + base
        r = await raw.post("/v1/auth/register", json={"username": name, "password": PASSWORD})
        login = await raw.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
        if "\x00" in name:  # NUL is refused by the wire model for every request body
            assert_error(r, 422, "validation_error")
            assert_error(login, 422, "validation_error")
        else:
            assert_error(r, 400, "invalid_username")
            assert_error(login, 401, "invalid_credentials")
        for path in (f"/v1/users/{quote(name, safe='')}", f"/v1/admin/users/{quote(name, safe='')}"):
            r = await raw.get(path, headers=bearer(admin) if "admin" in path else viewer)
            # control characters in a path are refused outright; the rest are unknown names
            assert_error(r, (400, 404))
            if r.status_code == 404:
                assert r.json()["error"]["code"] == "user_not_found"
    after = (await raw.get("/v1/admin/stats", headers=bearer(admin))).json()
    assert after["users"] == stats["users"]
    # KELVIN SIGN did not reach the account spelled with a plain k
    r = await raw.post("/v1/auth/login", json={"username": "\u212aelvin" + suffix, "password": PASSWORD})
    assert_error(r, 401, "invalid_credentials")
    assert (await api.login("kelvin" + suffix)).status_code == 200


async def test_absurd_path_parameters(api: Api, raw: httpx.AsyncClient) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    long_name = "x" * 10_000
    r = await raw.get(f"/v1/users/{long_name}", headers=h)
    err = assert_error(r, 404, "user_not_found")
    assert len(err["details"]["username"]) <= 64
    assert_error(await raw.get(f"/v1/users/{long_name}/avatar", headers=h), 404, "user_not_found")
    r = await raw.post(f"/v1/admin/users/{long_name}/ban", json={}, headers=h)
    assert_error(r, 404, "user_not_found")
    entry = (await raw.get("/v1/admin/audit", params={"limit": 1}, headers=h)).json()["entries"][0]
    assert entry["action"] == "users.ban" and entry["outcome"] == "user_not_found"
    assert len(entry["target"]) <= 128
    assert_error(await raw.delete(f"/v1/admin/registration-tokens/{'t' * 5000}", headers=h),
                 404, "registration_token_not_found")
    for path in ("/v1/users/%2e%2e", "/v1/users/..%2f..%2fetc%2fpasswd", "/v1/users/%ff%fe",
                 "/v1/users/%ED%A0%80", "/v1/users/'%20OR%201=1--", "/v1/users/%25"):
        assert_error(await raw.get(path, headers=h), 404)
    # NUL and other control characters, in the path or the query, on every backend
    for method, path in (("GET", "/v1/users/ab%00cd"), ("GET", "/v1/admin/users/%00"),
                         ("POST", "/v1/admin/users/%00/ban"), ("DELETE", "/v1/admin/registration-tokens/%00"),
                         ("DELETE", "/v1/sessions/%00"), ("GET", "/v1/users/a%0Ab"),
                         ("GET", "/v1/admin/users?search=%00"), ("GET", "/v1/admin/audit?action=a%00b")):
        r = await raw.request(method, path, headers=h, **({"json": {}} if method == "POST" else {}))
        assert_error(r, 400, "bad_request")
    # query parameters of the wrong type or range
    for params in ({"limit": "abc"}, {"limit": 0}, {"limit": 10**30}, {"offset": -1}, {"search": "s" * 65}):
        assert_error(await raw.get("/v1/admin/users", params=params, headers=h), 422, "validation_error")
    assert (await raw.get("/v1/admin/users", params={"search": "%_\\'\""}, headers=h)).status_code == 200


async def test_unknown_routes_and_wrong_methods(api: Api, raw: httpx.AsyncClient) -> None:
    tokens = await api.register()
    for path in ("/v1/nope", "/nope", "/v1/users", "/v1/admin", "/v1/account/profile/extra", "/v2/account"):
        assert_error(await raw.get(path, headers=bearer(tokens)), 404, "not_found")
    for method, path in (("DELETE", "/v1/auth/login"), ("GET", "/v1/auth/register"), ("PUT", "/v1/account"),
                         ("POST", "/v1/users/someone"), ("PATCH", "/v1/admin/stats")):
        r = await raw.request(method, path, headers=bearer(tokens))
        assert_error(r, 405, "method_not_allowed")
        assert r.headers.get("allow")


# --- registration tokens and admin bodies with hostile strings ------------------------------------


async def test_hostile_strings_in_tokens_and_reasons(api: Api, raw: httpx.AsyncClient) -> None:
    admin = await api.make_admin()
    h = bearer(admin)
    victim = api.name("vic")
    await api.register(victim)
    r = await raw.put("/v1/admin/registration", json={"mode": "token"}, headers=h)
    assert r.status_code == 200
    good = (await raw.post("/v1/admin/registration-tokens", json={"max_uses": 1}, headers=h)).json()["token"]
    for token in ("a\x00b", good + "\x00", "\x00", "' OR 1=1 --", "t" * 128, "%", "é", good[:-1]):
        r = await raw.post("/v1/auth/register", json={"username": api.name("tok"), "password": PASSWORD,
                                                      "registration_token": token})
        if "\x00" in token:  # NUL is refused by the wire model for every request body
            assert_error(r, 422, "validation_error")
        else:
            assert_error(r, 403, "registration_token_invalid")
    r = await raw.post("/v1/auth/register", json={"username": api.name("tok"), "password": PASSWORD,
                                                  "registration_token": "t" * 129})
    assert_error(r, 422, "validation_error")
    # the good token was not spent by any of that
    await api.register(api.name("tok"), registration_token=good)

    for reason in ("nul\x00", "esc\x1b[2J", "rtl\u202e", "r" * 501):
        r = await raw.post(f"/v1/admin/users/{victim}/ban", json={"reason": reason}, headers=h)
        assert_error(r, (400, 422))
    detail = (await raw.get(f"/v1/admin/users/{victim}", headers=h)).json()
    assert detail["banned"] is False and detail["ban_reason"] is None
    r = await raw.post(f"/v1/admin/users/{victim}/ban", json={"reason": "line one\nline two"}, headers=h)
    assert r.status_code == 200
    # lone surrogates cannot be stored anywhere: refused by the models, not a 500 from the driver
    for path, body in (("/v1/auth/register", b'{"username": "abcdef", "password": "\\ud800aaaaaaaaaaaa"}'),
                       ("/v1/auth/login", b'{"username": "abcdef", "password": "\\udfffaaaaaaaaaaaa"}'),
                       (f"/v1/admin/users/{victim}/ban", b'{"reason": "\\ud800"}')):
        r = await raw.post(path, content=body, headers={**JSON, **h})
        assert_error(r, (400, 422))
    # a surrogate *pair* is just an emoji
    r = await raw.post(f"/v1/admin/users/{victim}/ban", content=b'{"reason": "\\ud83d\\ude00"}',
                       headers={**JSON, **h})
    assert r.status_code == 200
    assert (await raw.get(f"/v1/admin/users/{victim}", headers=h)).json()["ban_reason"] == "\U0001f600"


# --- avatars ------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (with a valid CRC): a decompression bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00\x00\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def noisy_png(size: int = 200) -> bytes:
    img = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


async def test_bad_avatars(api: Api, raw: httpx.AsyncClient) -> None:
    name = api.name("badav")
    tokens = await api.register(name)
    viewer = await api.register()
    h = bearer(tokens)
    r = await raw.put("/v1/account/avatar", content=png_bytes(), headers={**h, "Content-Type": "image/png"})
    assert r.status_code == 200
    before = await avatar(raw, viewer, name)
    before_account = await account(raw, tokens)
    assert before[0] == 200

    five_mib = b"\x89PNG\r\n\x1a\n" + os.urandom(5 * 1024 * 1024)
    r = await raw.put("/v1/account/avatar", content=five_mib, headers={**h, "Content-Type": "image/png"})
    assert_error(r, 413, "payload_too_large")
    assert r.json()["error"]["details"] == {"max_bytes": AVATAR_LIMIT}
    r = await raw.put("/v1/account/avatar", content=chunked(five_mib), headers={**h, "Content-Type": "image/png"})
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "payload_too_large")

    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, format="BMP")
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    full = noisy_png()
    invalid = [b"this is not an image at all", b"\x89PNG\r\n\x1a\n", full[: len(full) // 2], full[:60],
               gif.getvalue(), bmp.getvalue(), svg, b"\xff\xd8\xff\xe0" + b"\x00" * 100,
               png_with_declared_size(100_000, 100_000),  # past Pillow's own bomb limit
               png_with_declared_size(7_000, 7_000),  # under Pillow's, over the server's
               png_with_declared_size(2**31 - 1, 1)]
    for data in invalid:
        for ctype in ("image/png", "image/jpeg"):
            r = await raw.put("/v1/account/avatar", content=data, headers={**h, "Content-Type": ctype})
            assert_error(r, 400, "invalid_image")
    assert_error(await raw.put("/v1/account/avatar", content=b"", headers={**h, "Content-Type": "image/png"}),
                 400, "invalid_image")

    for ctype in ("text/plain", "application/json", "image/gif", "image/svg+xml", "multipart/form-data", ""):
        r = await raw.put("/v1/account/avatar", content=png_bytes(), headers={**h, "Content-Type": ctype})
        assert_error(r, 415, "unsupported_media_type")
    r = await raw.put("/v1/account/avatar", content=png_bytes(), headers=h)
    assert_error(r, 415, "unsupported_media_type")

    assert await avatar(raw, viewer, name) == before
    assert await account(raw, tokens) == before_account


# --- property: arbitrary input never produces a 5xx ------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
auth_bodies = st.one_of(
    st.fixed_dictionaries(
        {"username": st.text(max_size=70), "password": st.text(max_size=40)},
        optional={"device_name": st.text(max_size=70) | json_values,
                  "registration_token": st.text(max_size=10) | json_values},
    ),
    st.fixed_dictionaries({"username": json_values, "password": json_values}),
    json_values,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=auth_bodies)
async def test_arbitrary_auth_bodies_never_5xx(sqlite_api: Api, body: Any) -> None:
    transport = httpx.ASGITransport(app=sqlite_api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://melo.test") as client:
        for path in ("/v1/auth/register", "/v1/auth/login"):
            r = await client.post(path, content=json.dumps(body), headers=JSON)
            assert r.status_code < 500, (path, body, r.text)
            if r.status_code >= 400:
                assert_error(r, r.status_code)
            else:
                assert r.status_code in (200, 201)
                assert r.json()["user"]["username"] == body["username"].lower()
