"""Integer bounds on ``/v1/ws``: an id or seq out of range in any command is a ``validation_error`` frame
with the request id and the socket goes on; out of range in the auth frame's cursor, the auth frame is
refused with an error frame and close code 4001 like any bad cursor, instead of a dropped connection.

The commands are read from the JSON schema of ``client_command_adapter``, so a new op or field is covered.
"""

import json
import uuid
from typing import Any

from melo_protocol.wire.realtime import client_command_adapter
from tests.kit.chatkit import raw_session
from tests.kit.livekit import Live
from tests.kit.wskit import Socket
from tests.server.realtime.test_delivery import backlog, ping
from tests.server.test_int_bounds import INT64_MAX, bounds, integers, out_of_range, resolve

# A valid command of each op with integers, "{chat}"/"{message}" standing for a channel and its message.
VALID_COMMANDS: dict[str, dict[str, Any]] = {
    "send": {"chat_id": "{chat}", "txn_id": "t", "text": "hi", "reply_to": "{message}"},
    "edit": {"chat_id": "{chat}", "message_id": "{message}", "text": "edited"},
    "delete": {"chat_id": "{chat}", "message_id": "{message}"},
    "react": {"chat_id": "{chat}", "message_id": "{message}", "emoji": "👍"},
    "typing": {"chat_id": "{chat}", "typing": True},
    "read": {"chat_id": "{chat}", "seq": 1},
    "received": {"chat_id": "{chat}", "seq": 1},
    "to_device_ack": {"up_to": 1},
}


def command_sites() -> list[tuple[str, tuple[str | int, ...], int, int]]:
    """(op, field, minimum, maximum) of every integer in every command but ``auth`` (tested apart)."""
    root = client_command_adapter.json_schema()
    sites = []
    for branch in root["oneOf"]:
        schema = resolve(root, branch)
        op = schema["properties"]["op"]["const"]
        if op == "auth":
            continue
        for loc, sub in integers(root, schema):
            sites.append((op, loc, *bounds(sub)))
    return sites


async def answer(sock: Socket, frame: dict[str, Any]) -> dict[str, Any]:
    await sock.ws.send(json.dumps(frame))
    return await sock.until(lambda f: f.get("id") == frame["id"] and f["type"] in ("ack", "error"))


async def test_out_of_range_integers_in_commands_get_a_validation_error_frame(live: Live) -> None:
    alice = await live.user("alice")
    chat = (await alice.call("POST", "/v1/chats", 201, json={"kind": "channel", "title": "bounds"}))["id"]
    message = (await alice.call("POST", f"/v1/chats/{chat}/messages", 201, json={"txn_id": "m", "text": "hi"}))["id"]
    fill = {"{chat}": chat, "{message}": message}
    sites = command_sites()
    assert {("read", ("chat_id",)), ("read", ("seq",)), ("send", ("reply_to",)), ("edit", ("message_id",)),
            ("to_device_ack", ("up_to",))} <= {(op, loc) for op, loc, _, _ in sites}, sites
    unbounded = [s for s in sites if not -(2**63) <= s[2] <= s[3] <= INT64_MAX]
    assert not unbounded, f"command integers without a minimum and maximum within 64 bits: {unbounded}"
    for op, loc, minimum, maximum in sites:
        assert op in VALID_COMMANDS, f"add a valid {op!r} command to VALID_COMMANDS"
        # a socket per field: each refusal counts towards the invalid-frame limit (close code 4009)
        sock = await alice.socket(cursor=None)
        await backlog(sock)
        for value in out_of_range(minimum, maximum):
            req = uuid.uuid4().hex[:12]
            frame = {"op": op, "id": req, **{k: fill.get(v, v) for k, v in VALID_COMMANDS[op].items()}}
            frame[str(loc[0])] = value
            f = await answer(sock, frame)
            assert f["type"] == "error" and f["error"]["code"] == "validation_error", (op, loc, value, f)
            assert [op, *map(str, loc)] in [e["loc"] for e in f["error"]["details"]["errors"]], (op, loc, f)
        for value in (minimum, maximum):  # in range: the command runs, or fails as the service says
            frame = {"op": op, "id": uuid.uuid4().hex[:12],
                     **{k: fill.get(v, v) for k, v in VALID_COMMANDS[op].items()}, str(loc[0]): value}
            f = await answer(sock, frame)
            assert f["type"] == "ack" or f["error"]["code"] not in ("internal_error", "validation_error"), (op, f)
        assert (await ping(sock))["type"] == "pong", "the socket goes on"
        await sock.close()


async def test_read_of_a_chat_id_past_64_bits(live: Live) -> None:
    """The issue's example, verbatim: it was an ``internal_error`` frame."""
    bob = await live.user("bob")
    sock = await bob.socket(cursor=None)
    await backlog(sock)
    f = await answer(sock, {"op": "read", "id": "r1", "chat_id": 2**70, "seq": 1})
    assert f == {"type": "error", "id": "r1", "error": {"code": "validation_error", "message": "invalid command",
                                                        "details": f["error"]["details"]}}
    assert ["read", "chat_id"] in [e["loc"] for e in f["error"]["details"]["errors"]]
    assert (await ping(sock))["type"] == "pong"
    await sock.close()


BAD_CURSORS = [{str(2**70): 1}, {str(2**63): 0}, {"0": 1}, {"-1": 1}, {"1": 2**63}, {"1": -1}, {"1": 2**70},
               {"abc": 1}, {"1": "many"}]


async def test_out_of_range_cursor_in_the_auth_frame_is_refused(live_backends: Live) -> None:
    bob = await live_backends.user("bob")
    chat = (await bob.call("POST", "/v1/chats", 201, json={"kind": "channel", "title": "cursor"}))["id"]
    for cursor in BAD_CURSORS:
        frames, code = await raw_session(live_backends, [{"op": "auth", "token": bob.tokens["access_token"],
                                                          "cursor": {str(chat): 0} | cursor}])
        assert code == 4001, (cursor, frames)
        assert [f["type"] for f in frames] == ["error"], (cursor, frames)
        err = frames[0]["error"]
        assert err["code"] == "validation_error" and err["details"]["errors"], (cursor, err)
        assert all(e["loc"][0] == "cursor" for e in err["details"]["errors"]), err
    # the largest chat id and seq are a cursor like any other (that chat is not the user's: no backlog)
    sock = await bob.socket(cursor={str(chat): 0, str(INT64_MAX): INT64_MAX})
    frames, caught = await backlog(sock)
    assert str(INT64_MAX) not in caught["cursor"] and str(chat) in caught["cursor"], caught
    assert (await ping(sock))["type"] == "pong"
    await sock.close()



async def test_a_cursor_past_the_chat_does_not_swallow_live_events(live: Live) -> None:
    """A seq ahead of the chat's last event once made the socket drop its live events as duplicates."""
    bob = await live.user("bob")
    chat = (await bob.call("POST", "/v1/chats", 201, json={"kind": "channel", "title": "ahead"}))["id"]
    sock = await bob.socket(cursor={str(chat): INT64_MAX})
    _frames, caught = await backlog(sock)
    assert caught["cursor"][str(chat)] < INT64_MAX  # the chat's real position, not the client's
    sent = await bob.call("POST", f"/v1/chats/{chat}/messages", 201, json={"txn_id": "ahead", "text": "live"})
    f = await sock.until(lambda f: f.get("type") == "message.created")
    assert f["chat_id"] == chat and f["data"]["id"] == sent["id"]
    await sock.close()
