"""Frames: the cost of building and reading one WebSocket frame, by serialiser, to choose one by measurement.

The frame is the hottest one: ``message.created`` with an end-to-end encrypted message, as the server
sends it to every member socket and the SDK reads it. Server side, what matters is turning the event
into text once per event (then the same text goes to every socket); client side, parsing one frame
into something typed.

- ``json`` (stdlib) on a dict: what the server does today (``json.dumps``), and what the SDK does
  (``json.loads`` and ``.get``), untyped;
- pydantic v2 (already a dependency, the choice): the server's ``chat_event_frame`` (the wire model
  built and ``model_dump_json``) and the SDK's ``parse_server_frame`` (the discriminated union on
  ``type``, ``validate_json``), as they run;
- orjson and msgspec, measured when installed (they are not dependencies): ``orjson.dumps`` of the
  dict; msgspec ``Struct`` types, typed both ways.

    python -m bench.frames       (or `python -m bench frames`)
"""

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from melo_protocol.wire.chats import MessageOut
from melo_protocol.wire.realtime import EventType, parse_server_frame
from server.realtime.frames import chat_event_frame

N = 20_000


def _message() -> dict[str, Any]:
    now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    return MessageOut(
        id=123456, chat_id=4242, seq=98765, sender="alice", sender_id=17, sender_device="DABCDEF0123456789",
        e2e={"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "x" * 43, "session_id": "s" * 43,
             "ciphertext": "c" * 300, "device_id": "DABCDEF0123456789"},
        created_at=now, reactions={"👍": ["bob"]},
    ).model_dump(mode="json")


def per_call_us(fn: Callable[[], object], n: int | None = None) -> float:
    n = N if n is None else n
    fn()
    best = float("inf")
    for _ in range(3):  # best of three: the machine is shared
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def measure() -> list[tuple[str, float, float]]:
    """(serialiser, encode µs, decode µs) for one message.created frame."""
    data = _message()
    ts = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    frame = {"type": "message.created", "chat_id": 4242, "seq": 98765, "ts": ts.isoformat(), "data": data}
    text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
    raw = text.encode()

    def std_encode() -> object:
        return json.dumps({"type": "message.created", "chat_id": 4242, "seq": 98765, "ts": ts.isoformat(),
                           "data": data}, separators=(",", ":"), default=str, ensure_ascii=False)

    def std_decode() -> object:
        f = json.loads(text)
        return f.get("type"), f.get("chat_id"), f.get("seq"), f.get("data", {}).get("e2e")

    def pyd_encode() -> object:  # what the server runs for each chat event (server/realtime/frames.py)
        return chat_event_frame(4242, 98765, EventType.MESSAGE_CREATED.value, ts, data)

    def pyd_decode() -> object:  # what the SDK runs for each frame: the union on ``type``, MessageOut inside
        return parse_server_frame(raw)

    rows = [("json (stdlib), untyped", per_call_us(std_encode), per_call_us(std_decode)),
            ("pydantic v2 models", per_call_us(pyd_encode), per_call_us(pyd_decode))]
    try:
        import orjson
    except ImportError:
        rows.append(("orjson (not installed)", float("nan"), float("nan")))
    else:
        rows.append(("orjson, untyped", per_call_us(lambda: orjson.dumps(
            {"type": "message.created", "chat_id": 4242, "seq": 98765, "ts": ts, "data": data})),
            per_call_us(lambda: orjson.loads(raw))))
    try:
        import msgspec
    except ImportError:
        rows.append(("msgspec (not installed)", float("nan"), float("nan")))
    else:
        class Msg(msgspec.Struct):
            id: int
            chat_id: int
            seq: int
            sender: str
            sender_id: int
            created_at: datetime
            sender_device: str | None = None
            text: str | None = None
            e2e: dict[str, Any] | None = None
            reply_to: int | None = None
            edited_at: datetime | None = None
            deleted: bool = False
            reactions: dict[str, list[str]] = {}
            pinned: bool = False

        class Event(msgspec.Struct, tag_field="type", tag="message.created"):
            chat_id: int
            seq: int
            ts: datetime
            data: Msg

        message = msgspec.convert(data, Msg)
        encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder(Event)
        rows.append(("msgspec Structs, typed", per_call_us(lambda: encoder.encode(
            Event(chat_id=4242, seq=98765, ts=ts, data=message))), per_call_us(lambda: decoder.decode(raw))))
    return rows


def main() -> None:
    rows = measure()
    base_enc, base_dec = rows[0][1], rows[0][2]
    print(f"frames: one message.created frame (E2E message, {N:,} rounds, best of 3)")
    print(f"{'serialiser':<28}{'encode µs':>11}{'× json':>8}{'decode µs':>11}{'× json':>8}")
    for name, enc, dec in rows:
        print(f"{name:<28}{enc:>11.2f}{enc / base_enc:>8.2f}{dec:>11.2f}{dec / base_dec:>8.2f}")


if __name__ == "__main__":
    main()
