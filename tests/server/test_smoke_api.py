"""Basic health of the app on every backend."""

from tests.conftest import Api, bearer


async def test_health_and_openapi(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    spec = (await api.client.get("/openapi.json")).json()
    assert "/v1/auth/login" in spec["paths"]
    metrics = await api.client.get("/metrics")
    assert "melo_http_requests_total" in metrics.text


async def test_register_login_whoami(api: Api) -> None:
    name = api.name("Alice")
    tokens = await api.register(name)
    assert tokens["user"]["username"] == name.lower()
    me = await api.client.get("/v1/account", headers=bearer(tokens))
    assert me.status_code == 200, me.text
    assert me.json()["username"] == name.lower()
    assert me.json()["session_id"] == tokens["session_id"]
    r = await api.login(name.upper())
    assert r.status_code == 200
    assert r.json()["session_id"] != tokens["session_id"]
