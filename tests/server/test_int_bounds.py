"""Integer bounds on every route: an id, seq, offset or limit outside what the wire allows is a 422
``validation_error`` in the one error shape, never a 500 from the database driver.

The test reads ``/openapi.json``, so a new route or field is covered without editing it: every integer
path, query and body field must declare a minimum and a maximum within a signed 64-bit integer (what
every database column stores), every value just past them and far past them (2**63, 2**64, 2**70, negative)
is refused for that very field, and the extremes within them reach the service without a 5xx.
"""

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import Api, bearer
from tests.server.test_accounts import assert_error

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # a signed BIGINT, on SQLite, PostgreSQL and MariaDB alike
METHODS = ("get", "put", "post", "patch", "delete")
# A valid body for every operation whose JSON body is walked, so that in-range extremes reach the service.
# Keys are (method, path) as in /openapi.json; "{message}" stands for the channel's message id.
SEND_AT = (datetime.now(UTC) + timedelta(days=2)).isoformat()
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/v1/chats/{chat_id}"): {"slow_mode_seconds": 0},
    ("post", "/v1/chats/{chat_id}/members"): {"username": "{member}"},
    ("put", "/v1/chats/{chat_id}/members/{username}/role"): {"role": "admin"},
    ("post", "/v1/chats/{chat_id}/transfer"): {"username": "{member}"},
    ("post", "/v1/chats/{chat_id}/invites"): {"expires_in_seconds": 3600, "max_uses": 5},
    ("post", "/v1/chats/{chat_id}/messages"): {"txn_id": "t", "text": "hello", "reply_to": "{message}"},
    ("patch", "/v1/chats/{chat_id}/messages/{message_id}"): {"text": "edited"},
    ("post", "/v1/chats/{chat_id}/pins"): {"message_id": "{message}"},
    ("post", "/v1/chats/{chat_id}/read"): {"seq": 1},
    ("post", "/v1/chats/{chat_id}/calls/missed"): {"call_id": "c1"},
    ("post", "/v1/chats/{chat_id}/scheduled"): {"txn_id": "s", "text": "later", "reply_to": "{message}",
                                                 "send_at": SEND_AT},
    ("put", "/v1/chats/{chat_id}/timer"): {"seconds": 60},
    ("put", "/v1/admin/chats/{chat_id}/retention"): {"days": 30},
    ("post", "/v1/to-device/ack"): {"ids": [1]},
    ("post", "/v1/admin/registration-tokens"): {"expires_in_seconds": 3600, "max_uses": 1},
}


class Site:
    """One integer the client chooses: a path or query parameter, or a field somewhere in the JSON body."""

    def __init__(self, op: dict[str, Any], method: str, path: str, where: str, loc: tuple[str | int, ...],
                 schema: dict[str, Any]) -> None:
        self.method, self.path, self.where, self.loc = method, path, where, loc
        self.minimum, self.maximum = bounds(schema)
        self.needs_body = op.get("requestBody", {}).get("required", False)

    def __repr__(self) -> str:
        return f"{self.method.upper()} {self.path} {self.where}:{'.'.join(map(str, self.loc))}"

    def out_of_range(self) -> list[int]:
        return out_of_range(self.minimum, self.maximum)


def bounds(schema: dict[str, Any]) -> tuple[int, int]:
    """An integer's declared range; one without a bound gets a value past 64 bits, and fails the range check."""
    return schema.get("minimum", INT64_MIN - 1), schema.get("maximum", INT64_MAX + 1)


def out_of_range(minimum: int, maximum: int) -> list[int]:
    """Just past each bound, and far past what any database stores, in both directions."""
    candidates = {minimum - 1, maximum + 1, -1, INT64_MIN - 1, -(2**70), 2**63, 2**64, 2**70, 10**30}
    return sorted(v for v in candidates if not minimum <= v <= maximum)


def resolve(root: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` ("#/components/schemas/X" in OpenAPI, "#/$defs/X" in a pydantic JSON schema)."""
    while "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def integers(root: dict[str, Any], schema: dict[str, Any],
             loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """Every integer inside a JSON schema, with where it sits (array items as index 0)."""
    schema = resolve(root, schema)
    if schema.get("type") == "integer":
        yield loc, schema
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        yield from integers(root, branch, loc)
    for name, sub in schema.get("properties", {}).items():
        yield from integers(root, sub, (*loc, name))
    if isinstance(schema.get("items"), dict):
        yield from integers(root, schema["items"], (*loc, 0))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from integers(root, schema["additionalProperties"], (*loc, "1"))


def integer_sites(spec: dict[str, Any]) -> list[Site]:
    sites: list[Site] = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            for param in op.get("parameters", []):
                for loc, schema in integers(spec, param["schema"], (param["name"],)):
                    sites.append(Site(op, method, path, param["in"], loc, schema))
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                for loc, schema in integers(spec, body["schema"]):
                    sites.append(Site(op, method, path, "body", loc, schema))
    return sites


def _put(target: Any, loc: tuple[str | int, ...], value: Any) -> None:
    for i, key in enumerate(loc[:-1]):
        if isinstance(target, dict) and key not in target:
            target[key] = [None] if isinstance(loc[i + 1], int) else {}
        target = target[key]
    target[loc[-1]] = value


class Context:
    """A channel the caller (an admin) owns, with a member and a message: valid values for everything but
    the integer under test, so in-range extremes go as deep as they can."""

    def __init__(self, chat_id: int, message_id: int, member: str) -> None:
        self.path = {"chat_id": chat_id, "message_id": message_id, "username": member, "emoji": "👍"}
        self.fill = {"{member}": member, "{message}": message_id}

    def request(self, site: Site, value: int) -> tuple[str, str, dict[str, Any], Any]:
        path_values: dict[str, Any] = dict(self.path)
        query: dict[str, Any] = {}
        body: Any = None
        if site.where == "path":
            path_values[str(site.loc[0])] = value
        elif site.where == "query":
            query[str(site.loc[0])] = value
        key = (site.method, site.path)
        if key in VALID_BODIES:
            body = json.loads(json.dumps(VALID_BODIES[key]), object_hook=self._fill)
        assert key in VALID_BODIES or not site.needs_body, f"add a valid body for {key} to VALID_BODIES"
        if site.where == "body":
            _put(body, site.loc, value)
        url = site.path
        for name in [part[1:-1] for part in url.split("/") if part.startswith("{")]:
            url = url.replace("{" + name + "}", quote(str(path_values.get(name, 1)), safe=""))
        return site.method.upper(), url, query, body

    def _fill(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {k: self.fill.get(v, v) if isinstance(v, str) else v for k, v in obj.items()}


@pytest.fixture
async def raw(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the same app that reports a crash as the 500 it would be, not as an exception."""
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False, client=("127.0.0.1", 50002))
    async with httpx.AsyncClient(transport=transport, base_url="http://melo.test") as client:
        yield client


async def _context(api: Api) -> tuple[dict[str, str], Context]:
    admin = await api.make_admin()
    member = await api.register()
    h = bearer(admin)
    r = await api.client.post("/v1/chats", json={"kind": "channel", "title": "bounds",
                                                "members": [member["user"]["username"]]}, headers=h)
    assert r.status_code == 201, r.text
    chat_id = r.json()["id"]
    r = await api.client.post(f"/v1/chats/{chat_id}/messages", json={"txn_id": "first", "text": "hi"}, headers=h)
    assert r.status_code == 201, r.text
    return h, Context(chat_id, r.json()["id"], member["user"]["username"])


async def test_every_integer_on_every_route_is_bounded(api: Api, raw: httpx.AsyncClient) -> None:
    spec = (await raw.get("/openapi.json")).json()
    sites = integer_sites(spec)
    # the walk found the integers the issue names, so it cannot pass by walking nothing
    names = {(s.where, s.loc[-1]) for s in sites}
    assert {("path", "chat_id"), ("path", "message_id"), ("query", "before"), ("query", "after"),
            ("query", "limit"), ("query", "offset"), ("body", "reply_to"), ("body", "message_id"),
            ("body", "seq"), ("path", "scheduled_id"), ("path", "subscription_id")} <= names, names
    unbounded = [s for s in sites if not INT64_MIN <= s.minimum <= s.maximum <= INT64_MAX]
    assert not unbounded, f"integers without a minimum and maximum within 64 bits: {unbounded}"
    h, ctx = await _context(api)
    for site in sites:
        for value in site.out_of_range():
            method, url, query, body = ctx.request(site, value)
            r = await raw.request(method, url, params=query, json=body, headers=h)
            err = assert_error(r, 422, "validation_error")
            locs = [tuple(e["loc"]) for e in err["details"]["errors"]]
            assert (site.where, *map(str, site.loc)) in locs, (site, value, locs)
        # In range, the request reaches the service: an answer, or its 4xx. Paths get their highest id only:
        # id 1 may be this test's own channel or message, which leave, transfer or delete would spoil.
        for value in (site.maximum,) if site.where == "path" else (site.minimum, site.maximum):
            method, url, query, body = ctx.request(site, value)
            r = await raw.request(method, url, params=query, json=body, headers=h)
            assert r.status_code < 500, (site, value, r.text)
            if r.status_code >= 400:
                assert_error(r, r.status_code)
