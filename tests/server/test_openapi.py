"""The OpenAPI document tells the truth: our error shape, the statuses and codes, the bearer scheme.

Beyond these tests, every server the suite starts checks on stopping that each status it answered is
declared on that operation (tests/openapi_truth.py).
"""

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from melo_protocol.wire import ErrorCode
from server.app import create_app
from server.config import Settings
from server.deps import get_caller
from server.openapi import OTHER_ANSWERS, ROUTE_ERRORS, api_routes
from tests.conftest import Api, bearer
from tests.openapi_truth import _answers, undeclared

ERROR_REF = "#/components/schemas/ErrorResponse"
# The only routes a client calls without a token.
PUBLIC = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/.well-known/jwks.json"),
    ("POST", "/v1/auth/register"), ("POST", "/v1/auth/login"), ("POST", "/v1/auth/refresh"),
    ("GET", "/v1/push/vapid"),
}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi")))


@pytest.fixture(scope="module")
def spec(app: Any) -> dict[str, Any]:
    return app.openapi()  # type: ignore[no-any-return]


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_no_fastapi_error_shape_is_left(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert not [n for n in walk(spec) if "detail" in n.get("properties", {})]
    assert "HTTPValidationError" not in json.dumps(spec)
    errors = 0
    for method, path, op in operations(spec):
        for status, response in op["responses"].items():
            if int(status) >= 400 and (method, path) != ("GET", "/readyz"):  # readyz: its own body on 503
                assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (method, path)
                errors += 1
    assert errors > 300
    assert schemas["ErrorResponse"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}


def test_error_codes_are_listed(spec: dict[str, Any]) -> None:
    body = spec["components"]["schemas"]["ErrorBody"]
    assert body["properties"]["code"]["enum"] == [c.value for c in ErrorCode]
    assert set(body["required"]) == {"code", "message"}
    named = set()
    for _, _, op in operations(spec):
        for status, response in op["responses"].items():
            if int(status) >= 400 and "Codes:" in response["description"]:
                named.update(re.findall(r"`([a-z_0-9]+)`", response["description"].split("Codes:")[1]))
    assert named <= {c.value for c in ErrorCode}
    # the rest belong to no operation: unmatched paths and methods, refused before routing, server errors,
    # and codes of the WebSocket only
    assert {c.value for c in ErrorCode} - named == {"bad_request", "method_not_allowed", "internal_error",
                                                     "service_unavailable"}


def test_bearer_scheme_on_exactly_the_routes_that_need_a_token(app: Any, spec: dict[str, Any]) -> None:
    assert spec["components"]["securitySchemes"] == {"bearerAuth": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"]}}
    needs_token = set()
    for route in api_routes(app):
        stack = list(route.dependant.dependencies)
        uses_caller = False
        while stack:
            dep = stack.pop()
            uses_caller |= dep.call is get_caller
            stack.extend(dep.dependencies)
        if uses_caller:
            needs_token.update((m, route.path_format) for m in route.methods)
    served = {(m, p) for m, p, _ in operations(spec)}
    assert served - needs_token == PUBLIC
    for method, path, op in operations(spec):
        if (method, path) in needs_token:
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            assert "401" in op["responses"] and "429" in op["responses"], (method, path)
            assert "`unauthenticated`" in op["responses"]["401"]["description"]
        else:
            assert "security" not in op, (method, path)


def test_route_table_matches_served_routes(spec: dict[str, Any]) -> None:
    served = {(m, p) for m, p, _ in operations(spec)}
    assert set(ROUTE_ERRORS) <= served, sorted(set(ROUTE_ERRORS) - served)
    assert set(OTHER_ANSWERS) <= served
    for method, path, op in operations(spec):
        if "{" in path:  # an id that may name nothing
            assert "404" in op["responses"], (method, path)
        for status, codes in ROUTE_ERRORS.get((method, path), {}).items():
            for c in codes:
                assert f"`{c.value}`" in op["responses"][str(status)]["description"], (method, path, status)
    direct = spec["paths"]["/v1/chats/direct"]["post"]["responses"]
    assert direct["201"]["content"] == direct["200"]["content"]
    assert direct["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatOut"}


async def test_the_served_document_is_the_same(sqlite_api: Api) -> None:
    served = (await sqlite_api.client.get("/openapi.json")).json()
    assert served == sqlite_api.app.openapi()
    assert "bearerAuth" in served["components"]["securitySchemes"]


def _url(path: str) -> str:
    return path.replace("{emoji}", "%F0%9F%91%8D").replace("{username}", "nobody").replace(
        "{code}", "nocode").replace("{token}", "notoken").replace("{session_id}", "nosession") \
        .replace("{chat_id}", "1").replace("{message_id}", "1").replace("{scheduled_id}", "1") \
        .replace("{subscription_id}", "1")


async def test_every_token_route_refuses_an_anonymous_caller_in_our_shape(sqlite_api: Api) -> None:
    api = sqlite_api
    spec = api.app.openapi()
    checked = 0
    for method, path, op in operations(spec):
        url = _url(path)
        assert "{" not in url, path
        body = {} if "requestBody" in op else None
        r = await api.client.request(method, url, json=body)
        error = r.json().get("error") if r.headers.get("content-type", "").startswith("application/json") else None
        if "security" in op:
            assert r.status_code == 401, (method, path, r.text)
            assert set(error) == {"code", "message", "details"} and error["code"] == "unauthenticated"
            assert r.headers["WWW-Authenticate"] == "Bearer"
            checked += 1
        else:  # public: whatever it answers, it is not "log in first"
            assert r.status_code != 401 or error["code"] != "unauthenticated", (method, path)
            assert str(r.status_code) in op["responses"], (method, path, r.status_code)
    assert checked == len(list(operations(spec))) - len(PUBLIC)


async def test_direct_chat_is_201_when_new_and_200_when_it_existed(sqlite_api: Api) -> None:
    api = sqlite_api
    alice, bob = await api.register(), await api.register()
    body = {"username": bob["user"]["username"]}
    first = await api.client.post("/v1/chats/direct", json=body, headers=bearer(alice))
    again = await api.client.post("/v1/chats/direct", json=body, headers=bearer(alice))
    back = await api.client.post("/v1/chats/direct", json={"username": alice["user"]["username"]},
                                 headers=bearer(bob))
    assert (first.status_code, again.status_code, back.status_code) == (201, 200, 200)
    assert first.json()["id"] == again.json()["id"] == back.json()["id"]
    declared = api.app.openapi()["paths"]["/v1/chats/direct"]["post"]["responses"]
    assert {"200", "201"} <= set(declared)


async def test_the_status_check_sees_real_answers(sqlite_api: Api) -> None:
    """The check every test server runs on stopping is not vacuous: it reads the app's real answers and
    reports one the document does not declare."""
    api = sqlite_api
    await api.client.get("/v1/account")
    await api.client.post("/v1/auth/login", json={})
    seen = _answers(api.app.state.metrics.registry.collect())
    assert ("GET", "/v1/account", 401) in seen and ("POST", "/v1/auth/login", 422) in seen
    spec = api.app.openapi()
    assert undeclared(spec, seen) == []
    assert undeclared(spec, [("GET", "/v1/account", 404), ("GET", "/v1/chats", 200)]) == ["GET /v1/account 404"]
    # answers that belong to no operation, and server errors, are not the document's business
    assert undeclared(spec, [("GET", "unmatched", 404), ("PUT", "/v1/account", 405), ("GET", "/v1/chats", 500)]) \
        == []
