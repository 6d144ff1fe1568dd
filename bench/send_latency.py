"""Send→deliver latency (p50, p99) and sequential durable sends/s between two users of one channel.

Alice sends over her WebSocket and waits for the ack (the message is committed); Bob's socket
receives it. Figures beside the aims in DESIGN.md (p50 ≤ 2 ms, p99 ≤ 10 ms, ≥ 1,500 msg/s).
"""

import asyncio
import json
import time
import uuid

import websockets

from bench.common import melo_server, percentile, register_users, table

N = 2000


async def run(n: int = N) -> dict[str, float]:
    with melo_server() as server:
        base = f"http://127.0.0.1:{server.port}"
        alice, bob = await register_users(base, [f"alice{uuid.uuid4().hex[:6]}", f"bob{uuid.uuid4().hex[:6]}"])
        import httpx

        async with httpx.AsyncClient(base_url=base) as http:
            chat = (await http.post("/v1/chats", json={"kind": "channel", "title": "bench",
                                                       "members": [bob["user"]["username"]]},
                                    headers={"Authorization": f"Bearer {alice['access_token']}"})).json()
        ws_url = f"ws://127.0.0.1:{server.port}/v1/ws"
        async with websockets.connect(ws_url) as a, websockets.connect(ws_url) as b:
            for ws, who in ((a, alice), (b, bob)):
                await ws.send(json.dumps({"op": "auth", "token": who["access_token"], "cursor": None}))
                while json.loads(await ws.recv())["type"] != "caught_up":
                    pass
            latencies: list[float] = []
            start_all = time.perf_counter()
            for i in range(n):
                t0 = time.perf_counter()
                await a.send(json.dumps({"op": "send", "id": str(i), "chat_id": chat["id"], "txn_id": f"t{i}",
                                         "text": f"message {i}"}))
                # wait for both: Bob's delivery and Alice's ack (durable)
                got_delivery = got_ack = False
                while not got_delivery:
                    frame = json.loads(await b.recv())
                    got_delivery = frame["type"] == "message.created"
                latencies.append((time.perf_counter() - t0) * 1000)
                while not got_ack:
                    frame = json.loads(await a.recv())
                    got_ack = frame["type"] == "ack" and frame.get("id") == str(i)
            elapsed = time.perf_counter() - start_all
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "rate": n / elapsed}


def main() -> None:
    r = asyncio.run(run())
    table("send → deliver, 2 users, one channel, embedded SQLite (sequential, each send waits for its ack)", [
        ("figure", "melo", "aim (DESIGN.md)", "ratio to aim"),
        ("p50 latency", f"{r['p50_ms']:.2f} ms", "≤ 2 ms", f"{r['p50_ms'] / 2:.2f}×"),
        ("p99 latency", f"{r['p99_ms']:.2f} ms", "≤ 10 ms", f"{r['p99_ms'] / 10:.2f}×"),
        ("durable sends/s", f"{r['rate']:.0f}", "≥ 1,500", f"{r['rate'] / 1500:.2f}×"),
    ])


if __name__ == "__main__":
    main()
