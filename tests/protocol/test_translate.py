"""The pure translation of live-stream frames into typed events and effects: frames as dicts in, no
server, no crypto store, no event loop."""

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from melo_protocol.client import events as ev
from melo_protocol.client import translate as tr
from melo_protocol.crypto import DecryptedChatMessage, IdentityChanged, OlmPayload, RoomKeyReceived, TrustState
from melo_protocol.wire.chats import MessageOut

ME = "alice"
ME_ID = 1
AT = "2026-01-02T03:04:05+00:00"


def message_data(
    *, id: int = 10, chat_id: int = 7, seq: int = 3, sender: str = "bob", sender_id: int = 2, **extra: Any
) -> dict[str, Any]:
    return {
        "id": id,
        "chat_id": chat_id,
        "seq": seq,
        "sender": sender,
        "sender_id": sender_id,
        "text": f"text {id}",
        "created_at": AT,
        **extra,
    }


class Reader:
    """A stand-in for the Messenger's decryption: the plain text as the message, and what it was asked."""

    def __init__(self) -> None:
        self.asked: list[MessageOut] = []

    def __call__(self, out: MessageOut) -> ev.Message:
        self.asked.append(out)
        return tr.message_view(out, out.text, "ok", own_user_id=ME_ID)


def translator() -> tuple[tr.Translator, Reader]:
    reader = Reader()
    t = tr.Translator(reader)
    t.username = ME
    return t, reader


# -- messages ------------------------------------------------------------------------------------------------
def test_a_message_from_someone_else_is_decrypted_and_acknowledged() -> None:
    t, reader = translator()
    got = t.translate({"type": "message.created", "chat_id": 7, "seq": 3, "data": message_data()})
    (event,) = got.events
    assert isinstance(event, ev.MessageReceived) and (event.chat_id, event.seq) == (7, 3)
    assert event.message is not None and event.message.text == "text 10" and event.message.sender == "bob"
    assert [m.id for m in reader.asked] == [10]
    assert got.effects == [tr.SendDelivered(chat_id=7, seq=3)]


def test_our_own_message_and_an_edit_send_no_delivered_receipt() -> None:
    t, _ = translator()
    own = t.translate({"type": "message.created", "chat_id": 7, "seq": 4, "data": message_data(sender=ME)})
    assert [type(e) for e in own.events] == [ev.MessageReceived] and own.effects == []
    edit = t.translate({"type": "message.edited", "chat_id": 7, "seq": 5, "data": message_data()})
    assert [type(e) for e in edit.events] == [ev.MessageEdited] and edit.effects == []
    assert edit.events[0].seq == 5


def test_a_deleted_message_is_forgotten_on_this_device_too() -> None:
    t, reader = translator()
    got = t.translate({"type": "message.deleted", "chat_id": 7, "seq": 9, "data": {"message_id": 10, "by": "bob"}})
    assert got.events == [ev.MessageDeleted(chat_id=7, seq=9, message_id=10, by="bob")]
    assert got.effects == [tr.ForgetMessage(chat_id=7, message_id=10)]
    assert reader.asked == []


def test_reactions_and_pins() -> None:
    t, _ = translator()
    added = t.translate(
        {"type": "reaction.added", "chat_id": 7, "seq": 5, "data": {"message_id": 10, "user": "bob", "emoji": "👍"}}
    )
    removed = t.translate({"type": "reaction.removed", "chat_id": 7, "seq": 6, "data": {"message_id": 10}})
    pinned = t.translate({"type": "message.pinned", "chat_id": 7, "seq": 7, "data": {"message_id": 10, "by": "bob"}})
    unpinned = t.translate({"type": "message.unpinned", "chat_id": 7, "seq": 8, "data": {"message_id": 10}})
    assert added.events == [ev.ReactionChanged(chat_id=7, seq=5, message_id=10, user="bob", emoji="👍", added=True)]
    assert removed.events == [ev.ReactionChanged(chat_id=7, seq=6, message_id=10, added=False)]
    assert pinned.events == [ev.PinChanged(chat_id=7, seq=7, message_id=10, by="bob", pinned=True)]
    assert unpinned.events == [ev.PinChanged(chat_id=7, seq=8, message_id=10, pinned=False)]
    assert added.effects == removed.effects == pinned.effects == unpinned.effects == []


# -- receipts ------------------------------------------------------------------------------------------------
def receipt(user: str, read: int, delivered: int = 0, chat_id: int = 7) -> dict[str, Any]:
    return {"type": "receipt", "chat_id": chat_id, "seq": None,
            "data": {"user": user, "read_seq": read, "delivered_seq": delivered}}  # fmt: skip


def test_a_contacts_receipts_all_pass() -> None:
    t, _ = translator()
    for read, delivered in [(3, 5), (3, 6), (2, 2)]:
        (event,) = t.translate(receipt("bob", read, delivered)).events
        assert event == ev.ReceiptUpdated(chat_id=7, user="bob", read_seq=read, delivered_seq=delivered)


def test_our_own_receipt_passes_only_when_our_read_position_moves_on() -> None:
    t, _ = translator()
    assert t.translate(receipt(ME, 0, delivered=4)).events == []  # a delivered receipt this device sent
    assert [e.read_seq for e in t.translate(receipt(ME, 5)).events] == [5]
    assert t.translate(receipt(ME, 5, delivered=9)).events == []
    assert t.translate(receipt(ME, 3)).events == []  # out of order: older than what we announced
    assert [e.read_seq for e in t.translate(receipt(ME, 5, chat_id=8)).events] == [5]  # per chat
    assert [e.read_seq for e in t.translate(receipt(ME, 6)).events] == [6]


@given(st.lists(st.tuples(st.sampled_from([7, 8]), st.integers(0, 20)), max_size=30))
def test_own_receipts_pass_exactly_at_each_new_high_per_chat(reads: list[tuple[int, int]]) -> None:
    t, _ = translator()
    high: dict[int, int] = {}
    for chat_id, read in reads:
        passed = t.translate(receipt(ME, read, chat_id=chat_id)).events
        moves = read > high.get(chat_id, 0)
        assert [e.read_seq for e in passed] == ([read] if moves else [])
        if moves:
            high[chat_id] = read


# -- ephemeral -----------------------------------------------------------------------------------------------
def test_typing_and_presence() -> None:
    t, _ = translator()
    assert t.translate({"type": "typing", "chat_id": 7, "user": "bob", "typing": True}).events == [
        ev.Typing(chat_id=7, user="bob", typing=True, expires_in=6)
    ]
    stopped = t.translate({"type": "typing", "chat_id": 7, "user": "bob", "typing": False, "expires_in": 2})
    assert stopped.events == [ev.Typing(chat_id=7, user="bob", typing=False, expires_in=2)]
    online = t.translate({"type": "presence", "user": "bob", "online": True, "last_seen": None})
    assert online.events == [ev.Presence(user="bob", online=True, last_seen=None)]
    away = t.translate({"type": "presence", "user": "bob", "online": False, "last_seen": AT})
    assert away.events == [ev.Presence(user="bob", online=False, last_seen=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))]


# -- membership and chats ------------------------------------------------------------------------------------
def test_member_changes_reset_the_recipients_and_a_leaver_gets_no_later_keys() -> None:
    t, _ = translator()
    joined = t.translate(
        {"type": "member.joined", "chat_id": 7, "seq": 2, "data": {"user": {"username": "carol"}, "role": "member"}}
    )
    assert joined.events == [ev.MemberChanged(chat_id=7, seq=2, change="joined", user="carol", role="member")]
    assert joined.effects == [tr.MembersChanged(chat_id=7, left=False)]
    for change in ("left", "removed"):
        got = t.translate(
            {"type": f"member.{change}", "chat_id": 7, "seq": 3, "data": {"user": {"username": "carol"}, "by": "bob"}}
        )
        assert got.events == [ev.MemberChanged(chat_id=7, seq=3, change=change, user="carol", by="bob")]  # type: ignore[arg-type]
        assert got.effects == [tr.MembersChanged(chat_id=7, left=True)]
    role = t.translate({"type": "member.role_changed", "chat_id": 7, "seq": 4, "data": {"role": "admin"}})
    assert role.events == [ev.MemberChanged(chat_id=7, seq=4, change="role_changed", user="", role="admin")]
    assert role.effects == [tr.MembersChanged(chat_id=7, left=False)]


def test_chat_changes_and_missed_calls() -> None:
    t, _ = translator()
    updated = t.translate({"type": "chat.updated", "chat_id": 7, "seq": 5, "data": {"title": "new"}})
    assert updated.events == [ev.ChatChanged(chat_id=7, seq=5, change="updated", data={"title": "new"})]
    assert updated.effects == [tr.ChatChanged(chat_id=7)]
    created = t.translate({"type": "chat.created", "chat_id": None, "data": {}})
    assert created.events == [ev.ChatChanged(change="created")] and created.effects == []
    missed = t.translate(
        {"type": "call.missed", "chat_id": 7, "seq": 6, "data": {"call_id": "c1", "caller": "bob", "at": AT}}
    )
    assert missed.events == [ev.CallMissed(chat_id=7, seq=6, call_id="c1", caller="bob", at=AT)]


# -- what needs this device's keys -----------------------------------------------------------------------------
def test_key_and_device_frames_become_effects_only() -> None:
    t, _ = translator()
    frame = {"type": "to_device", "id": 4, "sender": "bob", "sender_id": 2, "content": {"ciphertext": "…"}}
    assert t.translate(frame) == tr.Translated([], [tr.ToDevice(frame)])
    assert t.translate({"type": "devices.changed", "user": "bob"}) == tr.Translated([], [tr.DevicesChanged("bob")])
    assert t.translate({"type": "keys.low"}) == tr.Translated([], [tr.KeysLow()])
    assert t.translate({"type": "resync_required", "chat_ids": [7, 8]}) == tr.Translated(
        [ev.ResyncRequired(chat_ids=[7, 8])]
    )
    assert t.translate({"type": "something.new", "chat_id": 7}) == tr.Translated()
    assert t.translate({}) == tr.Translated()


def payload(type_: str, content: dict[str, Any]) -> OlmPayload:
    return OlmPayload(type_, content, 2, "BOBPHONE", "curve", "ed", True)


def test_to_device_payloads_are_told_apart() -> None:
    sas = payload("m.key.verification.start", {"transaction_id": "t"})
    request = payload(tr.KEY_REQUEST, {"chat_id": 7})
    call = payload("m.call.invite", {"call_id": "c1", "sdp": "v=0"})
    assert [tr.is_verification(p) for p in (sas, request, call)] == [True, False, False]
    assert [tr.is_key_request(p) for p in (sas, request, call)] == [False, True, False]
    assert tr.call_signal(sas, "bob") is None and tr.call_signal(request, "bob") is None
    assert tr.call_signal(call, "bob") == ev.CallSignal(
        user="bob", device_id="BOBPHONE", call_id="c1", action="invite", data={"call_id": "c1", "sdp": "v=0"}
    )


# -- the crypto machine's events -----------------------------------------------------------------------------
def test_a_room_key_makes_the_messages_waiting_for_it_readable_once() -> None:
    t, live = translator()
    waiting = MessageOut.model_validate(message_data(id=11, seq=4))
    other = MessageOut.model_validate(message_data(id=12, seq=5))
    t.wait_for_key("s1", waiting)
    t.wait_for_key("s2", other)
    again = Reader()
    key = RoomKeyReceived(chat_id=7, sender_key="k", session_id="s1", first_known_index=0)
    (edited,) = t.crypto_events([key], {}, again)
    assert isinstance(edited, ev.MessageEdited) and (edited.chat_id, edited.seq) == (7, 4)
    assert edited.message is not None and edited.message.id == 11
    assert [m.id for m in again.asked] == [11] and live.asked == []  # the given decrypt, not the live one
    assert t.crypto_events([key], {}, again) == []  # already read


def test_a_changed_identity_is_a_warning_named_by_username_when_known() -> None:
    t, _ = translator()
    changed = [IdentityChanged(2, "BOBPHONE", "c0", "e0", "c1", "e1"), IdentityChanged(3, "X", "c0", "e0", "c1", "e1")]
    assert t.crypto_events(changed, {2: "bob"}, Reader()) == [
        ev.KeyWarning(user="bob", device_id="BOBPHONE", reason="identity_changed"),
        ev.KeyWarning(user="3", device_id="X", reason="identity_changed"),
    ]


# -- views of a message --------------------------------------------------------------------------------------
def plain(content: dict[str, Any], sender_user_id: int = 2, trust: TrustState | None = None) -> DecryptedChatMessage:
    return DecryptedChatMessage(content, sender_user_id, "BOBPHONE", 0, "s1", trust)


def test_decrypted_views() -> None:
    out = MessageOut.model_validate(message_data(e2e={"ciphertext": "…"}, text=None))
    text = tr.decrypted_view(out, plain({"type": "m.text", "body": "hi"}), own_user_id=ME_ID)
    assert (text.text, text.status, text.kind, text.verified) == ("hi", "ok", "text", False)
    emote = tr.decrypted_view(
        out, plain({"type": "m.emote", "body": "waves"}, trust=TrustState.VERIFIED), own_user_id=1
    )
    assert (emote.text, emote.kind, emote.verified) == ("waves", "emote", True)
    no_body = tr.decrypted_view(out, plain({"type": "m.text", "body": 5}), own_user_id=ME_ID)
    assert (no_body.text, no_body.status) == (None, "ok")
    # the server must not re-attribute a message: the encrypted sender is the one shown
    forged = tr.decrypted_view(out, plain({"type": "m.text", "body": "hi"}, sender_user_id=3), own_user_id=ME_ID)
    assert (forged.text, forged.status) == (None, "undecryptable")


def test_message_views() -> None:
    mine = tr.message_view(MessageOut.model_validate(message_data(sender_id=ME_ID)), "x", "ok", own_user_id=ME_ID)
    assert mine.verified  # we sent it
    deleted = MessageOut.model_validate(message_data(deleted=True, reactions={"👍": ["bob"]}, pinned=True))
    view = tr.message_view(deleted, "x", "ok", own_user_id=ME_ID)
    assert (view.status, view.reactions, view.pinned, view.verified) == ("deleted", {"👍": ["bob"]}, True, False)
