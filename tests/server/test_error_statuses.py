"""The server answers each error code with its status in the one table (melo_protocol.wire.errors.HTTP_STATUS);
the few statuses routes answer besides it are listed (ALSO_ANSWERED) and kept as they were. The table itself
and the SDK's reading of it: tests/protocol/test_error_table.py."""

import ast
from datetime import timedelta
from pathlib import Path

import pytest

from melo_protocol.wire.errors import ALSO_ANSWERED, HTTP_STATUS, ErrorCode
from server.core.errors import _STATUS_CODES, ApiError
from server.db.types import utcnow
from tests.conftest import Api, bearer
from tests.server.test_accounts import PASSWORD, assert_error

SERVER = Path(__file__).resolve().parents[2] / "server"


def test_framework_errors_name_the_code_of_their_status() -> None:
    for status, code in _STATUS_CODES.items():
        assert HTTP_STATUS[code] == status, code


def test_a_domain_error_takes_its_status_from_its_code() -> None:
    assert ApiError(ErrorCode.CHAT_NOT_FOUND, "m").status == 404
    assert ApiError(ErrorCode.ACCOUNT_BANNED, "m").status == 401
    assert ApiError(ErrorCode.ACCOUNT_BANNED, "m", status=403).status == 403
    with pytest.raises(ValueError, match="chat_not_found"):
        ApiError(ErrorCode.CHAT_NOT_FOUND, "m", status=400)


def _api_error_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(SERVER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ApiError":
                calls.append((f"{path.relative_to(SERVER.parent)}:{node.lineno}", node))
    return calls


def test_no_raise_site_writes_a_status_the_table_does_not_allow() -> None:
    calls = _api_error_calls()
    assert len(calls) > 50
    for where, call in calls:
        first = call.args[0] if call.args else None
        assert not (isinstance(first, ast.Constant) and isinstance(first.value, int)), where
        status = next((k.value for k in call.keywords if k.arg == "status"), None)
        if isinstance(status, ast.Constant) and isinstance(first, ast.Attribute):
            code = ErrorCode[first.attr]
            assert status.value in ALSO_ANSWERED.get(code, ()), (where, code, status.value)


async def test_representative_answers_keep_their_statuses(sqlite_api: Api) -> None:
    api = sqlite_api
    me = await api.register()
    h = bearer(me)
    # the table's status
    assert_error(await api.login(me["user"]["username"], "wrong password!!"), 401, "invalid_credentials")
    assert_error(await api.client.get("/v1/chats/424242", headers=h), 404, "chat_not_found")
    assert_error(await api.client.post("/v1/chats", json={"kind": "group"}, headers=h), 422, "validation_error")
    assert_error(await api.client.get("/v1/account"), 401, "unauthenticated")
    # the statuses some routes answer besides it (ALSO_ANSWERED)
    r = await api.client.post(
        "/v1/account/password", headers=h, json={"current_password": "not it at all", "new_password": PASSWORD + "!"}
    )
    assert_error(r, 403, "invalid_credentials")
    chat = (await api.client.post("/v1/chats", json={"kind": "channel", "title": "t"}, headers=h)).json()
    later = (utcnow() + timedelta(hours=1)).isoformat()
    past = (utcnow() - timedelta(hours=1)).isoformat()
    url = f"/v1/chats/{chat['id']}/scheduled"
    err = assert_error(
        await api.client.post(url, json={"txn_id": "t1", "text": "hi", "send_at": past}, headers=h),
        400,
        "validation_error",
    )
    assert err["details"]["field"] == "send_at"
    r = await api.client.post(url, json={"txn_id": "t1", "text": "hi", "send_at": later}, headers=h)
    assert r.status_code == 201, r.text
    r = await api.client.post(url, json={"txn_id": "t1", "text": "hi", "send_at": later}, headers=h)
    assert_error(r, 409, "validation_error")
    sub = {"endpoint": "http://push.example.com/x", "p256dh": "B" * 87, "auth": "A" * 22}
    err = assert_error(await api.client.post("/v1/push/subscriptions", json=sub, headers=h), 400, "validation_error")
    assert err["details"] == {"field": "endpoint"}
