"""The server's logs of a whole session hold no password, refresh token or access token."""

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from server.core.logging import SERVER_LOGGERS, configure_logging
from tests.conftest import Api, bearer

WINDOW = 20


@pytest.fixture
def server_logs() -> Iterator[io.StringIO]:
    """The production log set-up (configure_logging: JSON lines, one stream handler on "melo", uvicorn's
    loggers and the root) at DEBUG, its stream pointed at a buffer. Restores those loggers afterwards."""
    loggers = [logging.getLogger(name) for name in SERVER_LOGGERS] + [logging.getLogger()]
    saved = [(list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    access = logging.getLogger("uvicorn.access")
    access_disabled = access.disabled
    configure_logging("debug", json_logs=True)
    melo = logging.getLogger("melo")
    assert len(melo.handlers) == 1 and isinstance(melo.handlers[0], logging.StreamHandler)
    buf = io.StringIO()
    melo.handlers[0].setStream(buf)
    yield buf
    for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
    access.disabled = access_disabled


def records(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def leaks(text: str, secret: str) -> list[str]:
    """The secret, or any WINDOW-character piece of it, found in text."""
    if len(secret) <= WINDOW:
        return [secret] if secret in text else []
    return [secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1) if secret[i : i + WINDOW] in text]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(out, format="PNG")
    return out.getvalue()


async def test_full_session_logs_no_secrets(api: Api, server_logs: io.StringIO) -> None:
    secrets: dict[str, str] = {}
    responses: list[str] = []
    name = api.name("logme")
    admin = await api.make_admin()
    secrets["admin access"] = admin["access_token"]
    secrets["admin refresh"] = admin["refresh_token"]

    # registration through a token, so a registration token is in play too
    r = await api.client.put("/v1/admin/registration", json={"mode": "token"}, headers=bearer(admin))
    assert r.status_code == 200
    reg_token = (await api.client.post("/v1/admin/registration-tokens", json={"max_uses": 5},
                                       headers=bearer(admin))).json()["token"]
    secrets["registration token"] = reg_token

    password = "first-password-Qx7-" + api.name("p")
    secrets["password"] = password
    r = await api.client.post("/v1/auth/register", json={"username": name, "password": password,
                                                         "registration_token": reg_token,
                                                         "device_name": "log test"})
    assert r.status_code == 201, r.text
    reg = r.json()
    secrets["register access"], secrets["register refresh"] = reg["access_token"], reg["refresh_token"]

    r = await api.login(name, password)
    assert r.status_code == 200
    login = r.json()
    secrets["login access"], secrets["login refresh"] = login["access_token"], login["refresh_token"]

    r = await api.client.post("/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    assert r.status_code == 200, r.text
    refreshed = r.json()
    secrets["refreshed access"], secrets["refreshed refresh"] = refreshed["access_token"], refreshed["refresh_token"]

    new_password = "second-password-Zk9-" + api.name("p")
    secrets["new password"] = new_password
    r = await api.client.post("/v1/account/password",
                              json={"current_password": password, "new_password": new_password},
                              headers=bearer(refreshed))
    assert r.status_code == 200, r.text

    r = await api.client.put("/v1/account/avatar", content=png(),
                             headers={**bearer(refreshed), "Content-Type": "image/png"})
    assert r.status_code == 200, r.text

    wrong = "wrong-password-Lm3-" + api.name("p")
    secrets["wrong password"] = wrong
    r = await api.login(name, wrong)
    assert r.status_code == 401
    responses.append(r.text)

    # bad bodies carrying passwords: neither logged nor echoed back
    r = await api.client.post("/v1/auth/register", json={"username": name, "password": wrong, "oops": wrong})
    assert r.status_code == 422
    responses.append(r.text)
    r = await api.client.post("/v1/auth/login", json={"username": [name], "password": new_password})
    assert r.status_code == 422
    responses.append(r.text)
    r = await api.client.post("/v1/account/password", json={"current_password": wrong, "new_password": "tiny"},
                              headers=bearer(refreshed))
    assert r.status_code == 403
    responses.append(r.text)
    r = await api.client.post("/v1/account/password",
                              json={"current_password": new_password, "new_password": "short pw"},
                              headers=bearer(refreshed))
    assert r.status_code == 400
    responses.append(r.text)

    r = await api.client.post("/v1/auth/logout", headers=bearer(refreshed))
    assert r.status_code == 204

    r = await api.client.post(f"/v1/admin/users/{name}/reset-password", json={}, headers=bearer(admin))
    assert r.status_code == 200
    temporary = r.json()["temporary_password"]
    secrets["temporary password"] = temporary
    assert (await api.login(name, temporary)).status_code == 200
    chosen = "admin-chosen-Wq2-" + api.name("p")
    secrets["admin-chosen password"] = chosen
    r = await api.client.post(f"/v1/admin/users/{name}/reset-password", json={"new_password": chosen},
                              headers=bearer(admin))
    assert r.status_code == 200
    responses.append(r.text)

    r = await api.client.delete(f"/v1/admin/registration-tokens/{reg_token}", headers=bearer(admin))
    assert r.status_code == 200
    r = await api.client.put("/v1/admin/registration", json={"mode": "open"}, headers=bearer(admin))
    assert r.status_code == 200

    logs = server_logs.getvalue()
    # the capture works: one JSON line per request, with a request id, method, route and status
    access = [rec for rec in records(server_logs) if rec.get("logger") == "melo.access"]
    assert len(access) >= 18, logs
    assert all(rec.get("request_id") and rec.get("status") for rec in access)
    seen = {(rec["method"], rec["path"], rec["status"]) for rec in access}
    assert ("POST", "/v1/auth/login", 401) in seen
    assert ("POST", "/v1/auth/refresh", 200) in seen
    assert ("POST", "/v1/admin/users/{username}/reset-password", 200) in seen
    assert ("DELETE", "/v1/admin/registration-tokens/{token}", 200) in seen

    for label, secret in secrets.items():
        assert not leaks(logs, secret), f"{label} found in the server logs"
    passwords = [v for k, v in secrets.items() if "password" in k and k != "temporary password"]
    for text in responses:
        for secret in passwords:
            assert not leaks(text, secret), f"a password echoed in an error response: {text}"


async def test_unmatched_paths_logged_cut_short(api: Api, server_logs: io.StringIO) -> None:
    long_path = "/v1/nothing-here/" + "q" * 5000
    r = await api.client.get(long_path)
    assert r.status_code == 404
    logs = server_logs.getvalue()
    hits = [rec for rec in records(server_logs) if rec.get("logger") == "melo.access" and rec.get("status") == 404]
    assert hits and all(len(rec["path"]) <= 200 for rec in hits)
    assert "q" * 300 not in logs
