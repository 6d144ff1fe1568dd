"""Fan-out to 1,000 connected members of one channel: deliveries/s and server CPU-µs per delivery,
beside a bare `websockets` broadcast server driven by the same load generator in the same run."""

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

import httpx
import websockets

from bench.common import ServerProcess, free_port, melo_server, register_users, table

MEMBERS = 1000
MESSAGES = 20


async def _receivers(url: str, n: int, auth: list[str] | None) -> list[Any]:
    socks = []
    for i in range(n):
        ws = await websockets.connect(url, max_queue=None, compression=None, open_timeout=60)
        if auth is not None:
            await ws.send(json.dumps({"op": "auth", "token": auth[i], "cursor": None}))
            while json.loads(await ws.recv())["type"] != "caught_up":
                pass
        socks.append(ws)
    return socks


async def _drain(socks: list[Any], expected_each: int, kind: str | None) -> None:
    async def one(ws: Any) -> None:
        got = 0
        while got < expected_each:
            frame = await ws.recv()
            if kind is None or f'"type":"{kind}"' in frame:
                got += 1

    await asyncio.gather(*(one(ws) for ws in socks))


async def bench_melo() -> dict[str, float]:
    with melo_server(MELO_WS_QUEUE_SIZE="4096") as server:
        base = f"http://127.0.0.1:{server.port}"
        tag = uuid.uuid4().hex[:5]
        users = await register_users(base, [f"m{tag}{i}" for i in range(MEMBERS)], concurrency=8)
        owner = users[0]
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            chat = (await http.post("/v1/chats", json={"kind": "channel", "title": "fanout",
                                                       "members": [u["user"]["username"] for u in users[1:]]},
                                    headers={"Authorization": f"Bearer {owner['access_token']}"})).json()
            url = f"ws://127.0.0.1:{server.port}/v1/ws"
            socks = await _receivers(url, MEMBERS, [u["access_token"] for u in users])
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            drain = asyncio.create_task(_drain(socks, MESSAGES, "message.created"))
            for i in range(MESSAGES):
                r = await http.post(f"/v1/chats/{chat['id']}/messages", json={"txn_id": f"f{i}", "text": f"hi {i}"},
                                    headers={"Authorization": f"Bearer {owner['access_token']}"})
                r.raise_for_status()
            await drain
            elapsed, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
            for ws in socks:
                await ws.close()
    deliveries = MEMBERS * MESSAGES
    return {"rate": deliveries / elapsed, "cpu_us": cpu * 1e6 / deliveries}


async def bench_bare() -> dict[str, float]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare_broadcast", str(port)]
    env = dict(os.environ)
    with ServerProcess(argv, env, port, None) as server:
        url = f"ws://127.0.0.1:{port}"
        socks = await _receivers(url, MEMBERS, None)
        sender = await websockets.connect(url, compression=None)
        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        drain = asyncio.create_task(_drain(socks, MESSAGES, None))
        for i in range(MESSAGES):
            await sender.send(json.dumps({"type": "message.created", "text": f"hi {i}"}))
        await drain
        elapsed, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
        for ws in [*socks, sender]:
            await ws.close()
    deliveries = MEMBERS * MESSAGES
    return {"rate": deliveries / elapsed, "cpu_us": cpu * 1e6 / deliveries}


def main() -> None:
    bare = asyncio.run(bench_bare())
    melo = asyncio.run(bench_melo())
    table(f"fan-out: {MESSAGES} messages to {MEMBERS} connected members (same load generator)", [
        ("figure", "melo", "bare websockets", "ratio", "aim"),
        ("deliveries/s", f"{melo['rate']:,.0f}", f"{bare['rate']:,.0f}", f"{melo['rate'] / bare['rate']:.2f}×",
         "≥ 0.7×"),
        ("server CPU-µs/delivery", f"{melo['cpu_us']:.1f}", f"{bare['cpu_us']:.1f}",
         f"{melo['cpu_us'] / bare['cpu_us']:.2f}×", "≤ 1.5×"),
    ])


if __name__ == "__main__":
    main()
