"""Request builders: every REST call as a plain value, with no I/O (in the manner of nio's api.py).

``MeloClient`` sends these; tests can check them without a network.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import validate_call

from melo_protocol.wire import (
    AdminPasswordReset,
    BanRequest,
    KeyRotateRequest,
    LoginRequest,
    PasswordChangeRequest,
    ProfileUpdate,
    RefreshRequest,
    RegisterRequest,
    RegistrationMode,
    RegistrationModeBody,
    RegistrationTokenCreate,
)
from melo_protocol.wire.base import Request as WireRequest
from melo_protocol.wire.calls import MissedCall
from melo_protocol.wire.chats import (
    ChatCreate,
    ChatUpdate,
    DirectChatCreate,
    E2EEnvelope,
    InviteCreate,
    MemberAdd,
    MessageEdit,
    MessageSend,
    OwnershipTransfer,
    PinRequest,
    ReactionKey,
    ReadMark,
    RoleChange,
)
from melo_protocol.wire.jobs import PushSubscriptionIn, RetentionRequest, ScheduleRequest, TimerRequest
from melo_protocol.wire.keys import KeysClaim, KeysQuery, KeysUpload, ToDeviceAck, ToDeviceSend


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    json: dict[str, Any] | None = field(default=None, repr=False)  # may hold a password
    params: dict[str, str | int] | None = None
    content: bytes | None = field(default=None, repr=False)
    content_type: str | None = None
    auth: bool = True  # needs the access token


def _seg(value: str) -> str:
    """One path segment, escaped so a name can never change the route."""
    return quote(value, safe="")


def _body(model: WireRequest, *, drop_none: bool = True) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=drop_none)


# -- auth and sessions -------------------------------------------------------------------------


def register(
    username: str, password: str, registration_token: str | None = None, device_name: str | None = None
) -> ApiRequest:
    body = RegisterRequest(
        username=username, password=password, registration_token=registration_token, device_name=device_name
    )
    return ApiRequest("POST", "/v1/auth/register", json=_body(body), auth=False)


def login(username: str, password: str, device_name: str | None = None) -> ApiRequest:
    body = LoginRequest(username=username, password=password, device_name=device_name)
    return ApiRequest("POST", "/v1/auth/login", json=_body(body), auth=False)


def refresh(refresh_token: str) -> ApiRequest:
    return ApiRequest(
        "POST", "/v1/auth/refresh", json=_body(RefreshRequest(refresh_token=refresh_token)), auth=False
    )


def logout() -> ApiRequest:
    return ApiRequest("POST", "/v1/auth/logout")


def whoami() -> ApiRequest:
    return ApiRequest("GET", "/v1/account")


def list_sessions() -> ApiRequest:
    return ApiRequest("GET", "/v1/sessions")


def revoke_session(session_id: str) -> ApiRequest:
    return ApiRequest("DELETE", f"/v1/sessions/{_seg(session_id)}")


def revoke_other_sessions() -> ApiRequest:
    return ApiRequest("POST", "/v1/sessions/revoke-others")


def revoke_all_sessions() -> ApiRequest:
    return ApiRequest("POST", "/v1/sessions/revoke-all")


# -- accounts ------------------------------------------------------------------------------------


def get_user(username: str) -> ApiRequest:
    return ApiRequest("GET", f"/v1/users/{_seg(username)}")


def update_profile(display_name: str | None = None, bio: str | None = None) -> ApiRequest:
    return ApiRequest(
        "PATCH", "/v1/account/profile", json=_body(ProfileUpdate(display_name=display_name, bio=bio))
    )


def set_avatar(data: bytes, content_type: str) -> ApiRequest:
    return ApiRequest("PUT", "/v1/account/avatar", content=data, content_type=content_type)


def remove_avatar() -> ApiRequest:
    return ApiRequest("DELETE", "/v1/account/avatar")


def change_password(current_password: str, new_password: str) -> ApiRequest:
    body = PasswordChangeRequest(current_password=current_password, new_password=new_password)
    return ApiRequest("POST", "/v1/account/password", json=_body(body))


# -- admin ---------------------------------------------------------------------------------------


def admin_list_users(search: str | None = None, limit: int = 100, offset: int = 0) -> ApiRequest:
    params: dict[str, str | int] = {"limit": limit, "offset": offset}
    if search:
        params["search"] = search
    return ApiRequest("GET", "/v1/admin/users", params=params)


def admin_show_user(username: str) -> ApiRequest:
    return ApiRequest("GET", f"/v1/admin/users/{_seg(username)}")


def admin_ban(username: str, reason: str | None = None) -> ApiRequest:
    return ApiRequest(
        "POST",
        f"/v1/admin/users/{_seg(username)}/ban",
        json=_body(BanRequest(reason=reason), drop_none=False),
    )


def admin_user_action(username: str, action: str) -> ApiRequest:
    """unban, deactivate, promote, demote: a POST with no body."""
    return ApiRequest("POST", f"/v1/admin/users/{_seg(username)}/{action}")


def admin_reset_password(username: str, new_password: str | None = None) -> ApiRequest:
    return ApiRequest(
        "POST",
        f"/v1/admin/users/{_seg(username)}/reset-password",
        json=_body(AdminPasswordReset(new_password=new_password), drop_none=False),
    )


def admin_revoke_user_sessions(username: str) -> ApiRequest:
    return ApiRequest("POST", f"/v1/admin/users/{_seg(username)}/sessions/revoke-all")


def admin_get_registration() -> ApiRequest:
    return ApiRequest("GET", "/v1/admin/registration")


def admin_set_registration(mode: RegistrationMode | str) -> ApiRequest:
    return ApiRequest(
        "PUT", "/v1/admin/registration", json=_body(RegistrationModeBody(mode=RegistrationMode(mode)))
    )


def admin_create_token(expires_in_seconds: int | None = None, max_uses: int | None = None) -> ApiRequest:
    body = RegistrationTokenCreate(expires_in_seconds=expires_in_seconds, max_uses=max_uses)
    return ApiRequest("POST", "/v1/admin/registration-tokens", json=_body(body, drop_none=False))


def admin_list_tokens() -> ApiRequest:
    return ApiRequest("GET", "/v1/admin/registration-tokens")


def admin_revoke_token(token: str) -> ApiRequest:
    return ApiRequest("DELETE", f"/v1/admin/registration-tokens/{_seg(token)}")


def admin_stats() -> ApiRequest:
    return ApiRequest("GET", "/v1/admin/stats")


def admin_audit(limit: int = 50, action: str | None = None) -> ApiRequest:
    params: dict[str, str | int] = {"limit": limit}
    if action:
        params["action"] = action
    return ApiRequest("GET", "/v1/admin/audit", params=params)


def admin_list_keys() -> ApiRequest:
    return ApiRequest("GET", "/v1/admin/keys")


def admin_rotate_keys(jwt: bool = True, data: bool = False) -> ApiRequest:
    body = _body(KeyRotateRequest(jwt=jwt))
    if data:  # sent only when asked, so servers without at-rest key rotation still accept a JWT rotation
        body["data"] = True
    return ApiRequest("POST", "/v1/admin/keys/rotate", json=body)


# -- chats, members, invites -------------------------------------------------------------------


def create_direct(username: str) -> ApiRequest:
    return ApiRequest("POST", "/v1/chats/direct", json=_body(DirectChatCreate(username=username)))


def create_chat(kind: str, title: str, members: list[str] | None = None, description: str | None = None) -> ApiRequest:
    body = ChatCreate(kind=kind, title=title, members=members or [], description=description)  # type: ignore[arg-type]
    return ApiRequest("POST", "/v1/chats", json=_body(body))


def list_chats() -> ApiRequest:
    return ApiRequest("GET", "/v1/chats")


def get_chat(chat_id: int) -> ApiRequest:
    return ApiRequest("GET", f"/v1/chats/{int(chat_id)}")


def update_chat(chat_id: int, title: str | None = None, description: str | None = None,
                slow_mode_seconds: int | None = None) -> ApiRequest:
    body = ChatUpdate(title=title, description=description, slow_mode_seconds=slow_mode_seconds)
    return ApiRequest("PATCH", f"/v1/chats/{int(chat_id)}", json=_body(body))


def list_members(chat_id: int) -> ApiRequest:
    return ApiRequest("GET", f"/v1/chats/{int(chat_id)}/members")


def add_member(chat_id: int, username: str) -> ApiRequest:
    return ApiRequest("POST", f"/v1/chats/{int(chat_id)}/members", json=_body(MemberAdd(username=username)))


def remove_member(chat_id: int, username: str) -> ApiRequest:
    return ApiRequest("DELETE", f"/v1/chats/{int(chat_id)}/members/{_seg(username)}")


def change_role(chat_id: int, username: str, role: str) -> ApiRequest:
    return ApiRequest("PUT", f"/v1/chats/{int(chat_id)}/members/{_seg(username)}/role",
                      json=_body(RoleChange(role=role)))  # type: ignore[arg-type]


def leave_chat(chat_id: int) -> ApiRequest:
    return ApiRequest("POST", f"/v1/chats/{int(chat_id)}/leave")


def transfer_chat(chat_id: int, username: str) -> ApiRequest:
    return ApiRequest("POST", f"/v1/chats/{int(chat_id)}/transfer", json=_body(OwnershipTransfer(username=username)))


def create_invite(chat_id: int, expires_in_seconds: int | None = None, max_uses: int | None = None) -> ApiRequest:
    body = InviteCreate(expires_in_seconds=expires_in_seconds, max_uses=max_uses)
    return ApiRequest("POST", f"/v1/chats/{int(chat_id)}/invites", json=_body(body))


def list_invites(chat_id: int) -> ApiRequest:
    return ApiRequest("GET", f"/v1/chats/{int(chat_id)}/invites")


def revoke_invite(code: str) -> ApiRequest:
    return ApiRequest("DELETE", f"/v1/invites/{_seg(code)}")


def join_invite(code: str) -> ApiRequest:
    return ApiRequest("POST", f"/v1/invites/{_seg(code)}/join")


# -- messages ----------------------------------------------------------------------------------


def send_message(chat_id: int, txn_id: str, text: str | None = None, e2e: dict[str, Any] | None = None,
                 reply_to: int | None = None, recipient_devices: str | None = None) -> ApiRequest:
    body = MessageSend(txn_id=txn_id, text=text, e2e=E2EEnvelope(**e2e) if e2e else None, reply_to=reply_to,
                       recipient_devices=recipient_devices)
    return ApiRequest("POST", f"/v1/chats/{int(chat_id)}/messages", json=_body(body))


def history(chat_id: int, before: int | None = None, after: int | None = None, limit: int = 50) -> ApiRequest:
    params: dict[str, str | int] = {"limit": int(limit)}
    if before is not None:
        params["before"] = int(before)
    if after is not None:
        params["after"] = int(after)
    return ApiRequest("GET", f"/v1/chats/{int(chat_id)}/messages", params=params)


def edit_message(
    chat_id: int, message_id: int, text: str | None = None, e2e: dict[str, Any] | None = None,
    recipient_devices: str | None = None,
) -> ApiRequest:
    body = MessageEdit(text=text, e2e=E2EEnvelope(**e2e) if e2e else None, recipient_devices=recipient_devices)
    return ApiRequest("PATCH", f"/v1/chats/{int(chat_id)}/messages/{int(message_id)}", json=_body(body))


def delete_message(chat_id: int, message_id: int) -> ApiRequest:
    return ApiRequest("DELETE", f"/v1/chats/{int(chat_id)}/messages/{int(message_id)}")


@validate_call  # the emoji is checked (and made fully qualified) here, before anything is sent
def react(chat_id: int, message_id: int, *, emoji: ReactionKey, remove: bool = False) -> ApiRequest:
    return ApiRequest("DELETE" if remove else "PUT",
                      f"/v1/chats/{int(chat_id)}/messages/{int(message_id)}/reactions/{_seg(emoji)}")


def list_pins(chat_id: int) -> ApiRequest:
    return ApiRequest("GET", f"/v1/chats/{int(chat_id)}/pins")


def pin(chat_id: int, message_id: int, unpin: bool = False) -> ApiRequest:
    if unpin:
        return ApiRequest("DELETE", f"/v1/chats/{int(chat_id)}/pins/{int(message_id)}")
    return ApiRequest("POST", f"/v1/chats/{int(chat_id)}/pins", json=_body(PinRequest(message_id=message_id)))


def mark_read(chat_id: int, seq: int) -> ApiRequest:
    return ApiRequest("POST", f"/v1/chats/{int(chat_id)}/read", json=_body(ReadMark(seq=seq)))


# -- scheduled messages, timers, retention ---------------------------------------------------


def schedule_message(chat_id: int, txn_id: str, send_at: datetime, text: str | None = None,
                     e2e: dict[str, Any] | None = None, reply_to: int | None = None) -> ApiRequest:
    body = ScheduleRequest(txn_id=txn_id, text=text, e2e=E2EEnvelope(**e2e) if e2e else None, reply_to=reply_to,
                           send_at=send_at)
    return ApiRequest("POST", f"/v1/chats/{int(chat_id)}/scheduled", json=_body(body))


def list_scheduled() -> ApiRequest:
    return ApiRequest("GET", "/v1/scheduled")


def cancel_scheduled(scheduled_id: int) -> ApiRequest:
    return ApiRequest("DELETE", f"/v1/scheduled/{int(scheduled_id)}")


def set_timer(chat_id: int, seconds: int | None) -> ApiRequest:
    """A chat's disappearing-message timer; None turns it off."""
    return ApiRequest("PUT", f"/v1/chats/{int(chat_id)}/timer", json=_body(TimerRequest(seconds=seconds),
                                                                           drop_none=False))


def admin_set_retention(chat_id: int, days: int | None) -> ApiRequest:
    """A chat's retention in days; None falls back to the server default."""
    return ApiRequest("PUT", f"/v1/admin/chats/{int(chat_id)}/retention",
                      json=_body(RetentionRequest(days=days), drop_none=False))


def admin_run_retention() -> ApiRequest:
    return ApiRequest("POST", "/v1/admin/retention/run")


# -- web push ----------------------------------------------------------------------------------


def push_vapid() -> ApiRequest:
    return ApiRequest("GET", "/v1/push/vapid", auth=False)


def push_subscribe(endpoint: str, p256dh: str, auth: str, include_sender: bool = False) -> ApiRequest:
    body = PushSubscriptionIn(endpoint=endpoint, p256dh=p256dh, auth=auth, include_sender=include_sender)
    return ApiRequest("POST", "/v1/push/subscriptions", json=_body(body))


def push_list() -> ApiRequest:
    return ApiRequest("GET", "/v1/push/subscriptions")


def push_unsubscribe(subscription_id: int) -> ApiRequest:
    return ApiRequest("DELETE", f"/v1/push/subscriptions/{int(subscription_id)}")


# -- calls ---------------------------------------------------------------------------------------
def ice_servers() -> ApiRequest:
    return ApiRequest("GET", "/v1/calls/ice-servers")


def record_missed_call(chat_id: int, call_id: str, at: datetime | None = None) -> ApiRequest:
    return ApiRequest("POST", f"/v1/chats/{int(chat_id)}/calls/missed",
                      json=_body(MissedCall(call_id=call_id, at=at)))


# -- keys and to-device ------------------------------------------------------------------------


def keys_upload(device_keys: dict[str, Any] | None = None, one_time_keys: dict[str, Any] | None = None,
                fallback_key: dict[str, Any] | None = None) -> ApiRequest:
    body = KeysUpload(device_keys=device_keys, one_time_keys=one_time_keys, fallback_key=fallback_key)
    return ApiRequest("POST", "/v1/keys/upload", json=_body(body))


def keys_count() -> ApiRequest:
    return ApiRequest("GET", "/v1/keys/count")


def keys_query(users: list[str]) -> ApiRequest:
    return ApiRequest("POST", "/v1/keys/query", json=_body(KeysQuery(users=users)))


def keys_claim(devices: dict[str, list[str]]) -> ApiRequest:
    return ApiRequest("POST", "/v1/keys/claim", json=_body(KeysClaim(devices=devices)))


def send_to_device(type_: str, messages: dict[str, dict[str, dict[str, Any]]]) -> ApiRequest:
    return ApiRequest("POST", "/v1/to-device", json=_body(ToDeviceSend(type=type_, messages=messages)))


def list_to_device(after: int = 0, limit: int = 100) -> ApiRequest:
    return ApiRequest("GET", "/v1/to-device", params={"after": int(after), "limit": int(limit)})


def ack_to_device(ids: list[int]) -> ApiRequest:
    return ApiRequest("POST", "/v1/to-device/ack", json=_body(ToDeviceAck(ids=ids)))
