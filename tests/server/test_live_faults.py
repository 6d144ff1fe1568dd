"""A real ``melo-server run`` under uvicorn meeting a server fault and over-size WebSocket frames.

The fault is injected into a real route (tests/faults.py, imported into the server process). What the client
and the operator see is checked from outside: the answer and its headers, the connection it came on, the
metrics, and every line the process wrote to stderr.
"""

import asyncio
import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import h11
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from melo_protocol.wire.realtime import MAX_FRAME_BYTES
from tests.faults import FAULT_MESSAGE, FAULTY_USERNAME
from tests.kit.wskit import closed_code, connect
from tests.live import LiveServer, running_server

TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # info: the access log and uvicorn's own start-up lines are info lines
    with running_server(tmp_path_factory.mktemp("faults"), {"MELO_LOG_LEVEL": "info"},
                        preload="tests.faults") as live:
        yield live


def register(server: LiveServer, username: str) -> dict[str, Any]:
    r = httpx.post(server.url + "/v1/auth/register", json={"username": username, "password": "correct horse battery"})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


class KeepAliveClient:
    """HTTP/1.1 on one TCP connection, request after request (h11): a connection the server drops shows."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self.conn = h11.Connection(h11.CLIENT)

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        hdrs = [("Host", "127.0.0.1"), *headers.items()]
        self.sock.sendall(self.conn.send(h11.Request(method="GET", target=path, headers=hdrs)))
        self.sock.sendall(self.conn.send(h11.EndOfMessage()))
        status, head, body = 0, {}, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = self.sock.recv(65536)
                assert data, "the server closed the connection"
                self.conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
                head = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return status, head, body

    def close(self) -> None:
        self.sock.close()


def log_records(server: LiveServer) -> list[dict[str, Any]]:
    """Every line the server wrote, each of which must be a JSON object."""
    records = []
    for line in server.log().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a line of the server's log is not JSON: {line!r}\n{server.log()}")
    return records


def wait_for_record(server: LiveServer, pred: Any) -> dict[str, Any]:
    """The first log record matching pred; the server writes some lines just after it answers."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        for rec in log_records(server):
            if pred(rec):
                return rec
        assert time.monotonic() < deadline, f"no such log record:\n{server.log()}"
        time.sleep(0.05)  # polling a file with a deadline, not synchronisation


def requests_total(server: LiveServer, route: str, status: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "melo_http_requests_total" and sample.labels.get("route") == route
                    and sample.labels.get("status") == status):
                return float(sample.value)
    return 0.0


def test_a_server_fault_answers_500_and_is_logged_and_counted_with_its_request_id(server: LiveServer) -> None:
    me = register(server, "faultwatcher")
    auth = {"Authorization": f"Bearer {me['access_token']}"}
    route = "/v1/users/{username}"
    client = KeepAliveClient(server.port)
    try:
        status, headers, body = client.get(f"/v1/users/{FAULTY_USERNAME}", auth)
        # 1. the one error shape, with a request id, and nothing of the fault itself
        assert status == 500
        assert json.loads(body) == {"error": {"code": "internal_error", "message": "internal server error",
                                              "details": {}}}
        rid = headers.get("x-request-id")
        assert rid, headers
        assert FAULT_MESSAGE not in body.decode()
        assert headers.get("connection", "").lower() != "close"
        # 2. the keep-alive connection survives: the next request on it is answered
        status, headers, body = client.get("/v1/users/faultwatcher", auth)
        assert status == 200, body
        assert json.loads(body)["username"] == "faultwatcher"
        assert headers.get("x-request-id") not in (None, rid)
    finally:
        client.close()

    # 3. the error's log line carries the request id, with the traceback inside the JSON record
    error = wait_for_record(server, lambda r: r.get("logger") == "melo.errors")
    assert error["request_id"] == rid
    assert error["level"] == "error" and error["exc_type"] == "InjectedFault"
    assert "Traceback" in error["exc"] and "tests/faults.py" in error["exc"]
    # 4. the access log and the metrics record the 500 (not 0)
    access = wait_for_record(server, lambda r: r.get("logger") == "melo.access" and r.get("request_id") == rid)
    assert (access["method"], access["path"], access["status"]) == ("GET", route, 500)
    assert requests_total(server, route, "500") == 1
    assert requests_total(server, route, "200") >= 1
    assert requests_total(server, route, "0") == 0
    # 5. nothing in plain text: every line is JSON (log_records fails otherwise), uvicorn's own lines included,
    # and uvicorn did not see the exception at all (it would log "Exception in ASGI application")
    records = log_records(server)
    assert any(r.get("logger") == "uvicorn.error" for r in records), "uvicorn's start-up lines are JSON too"
    assert any(r.get("logger") == "melo.server" and "listening on" in r["msg"] for r in records)
    assert not [r for r in records if "Exception in ASGI application" in r.get("msg", "")]
    assert len([r for r in records if r.get("exc_type") == "InjectedFault"]) == 1


def frame_header(length: int) -> bytes:
    """The header of a masked client text frame of ``length`` bytes (RFC 6455 5.2), mask key included."""
    return struct.pack("!BBQ", 0x81, 0x80 | 127, length) + b"\x00\x00\x00\x00"


async def test_an_oversize_auth_frame_is_refused_from_its_header(server: LiveServer) -> None:
    ws_url = server.url.replace("http://", "ws://") + "/v1/ws"
    # Ten unauthenticated sockets announce 15 MiB auth frames and send only their first KiB: each is closed
    # with 1009 although the server could not have read the frame (most of it was never sent).
    sockets = [await connect(ws_url) for _ in range(10)]
    for ws in sockets:
        ws.transport.write(frame_header(15 * 1024 * 1024) + b"x" * 1024)
    assert await asyncio.gather(*(closed_code(ws, TIMEOUT_S) for ws in sockets)) == [1009] * 10
    # a frame one byte over the limit, sent in full, is refused the same way
    async with connect(ws_url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": "x" * MAX_FRAME_BYTES, "cursor": None}))
        assert await closed_code(ws, TIMEOUT_S) == 1009
    # the server goes on
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/healthz")).status_code == 200

