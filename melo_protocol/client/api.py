"""Request builders: every REST call as a plain value, with no I/O (in the manner of nio's api.py).

``MeloClient`` sends these; tests can check them without a network.
"""

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

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


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    json: dict[str, Any] | None = field(default=None, repr=False)  # may hold a password
    params: dict[str, str | int] | None = None
    content: bytes | None = field(default=None, repr=False)
    content_type: str | None = None
    auth: bool = True  # needs the access token
    expect: int = 200


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
    return ApiRequest("POST", "/v1/auth/register", json=_body(body), auth=False, expect=201)


def login(username: str, password: str, device_name: str | None = None) -> ApiRequest:
    body = LoginRequest(username=username, password=password, device_name=device_name)
    return ApiRequest("POST", "/v1/auth/login", json=_body(body), auth=False)


def refresh(refresh_token: str) -> ApiRequest:
    return ApiRequest(
        "POST", "/v1/auth/refresh", json=_body(RefreshRequest(refresh_token=refresh_token)), auth=False
    )


def logout() -> ApiRequest:
    return ApiRequest("POST", "/v1/auth/logout", expect=204)


def whoami() -> ApiRequest:
    return ApiRequest("GET", "/v1/account")


def list_sessions() -> ApiRequest:
    return ApiRequest("GET", "/v1/sessions")


def revoke_session(session_id: str) -> ApiRequest:
    return ApiRequest("DELETE", f"/v1/sessions/{_seg(session_id)}", expect=204)


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
    return ApiRequest("POST", "/v1/admin/registration-tokens", json=_body(body, drop_none=False), expect=201)


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


def admin_rotate_keys(jwt: bool = True) -> ApiRequest:
    return ApiRequest("POST", "/v1/admin/keys/rotate", json=_body(KeyRotateRequest(jwt=jwt)))
