"""The OpenAPI document at /openapi.json, made to tell the truth about errors and tokens.

FastAPI alone describes 422 as its own ``{"detail": [...]}`` (which this server never sends) and no other
error. Here every error answer a route can give is declared with the one error shape (``ErrorResponse``)
and the codes it may carry:

- derived from the route itself: its token dependency (``bearer_scheme``, which also puts the bearer
  security requirement on it) → 401 and the per-user rate limit 429; the admin dependency → 403; a JSON
  body → 400 ``malformed_json`` and 413; any parameter or body → 422 ``validation_error``;
- the domain refusals of each route, from ``ROUTE_ERRORS`` below, which mirrors the services' ``ApiError``
  raises (tests/server/test_openapi.py holds the table to what the server really answers).

Other answers with the route's own body (an existing DM is 200, a new one 201; /readyz 503) are in
``OTHER_ANSWERS``.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from melo_protocol.wire import ErrorCode, ErrorResponse
from server.deps import bearer_scheme, get_admin

E = ErrorCode
Codes = tuple[ErrorCode, ...]
ERROR_REF = "#/components/schemas/ErrorResponse"

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request: `details.errors` lists each field's problem as {loc, type, msg}",
    429: "Too many requests: wait `Retry-After` seconds",
}
HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}

TOKEN_ERRORS: dict[int, Codes] = {
    401: (E.UNAUTHENTICATED, E.INVALID_TOKEN, E.TOKEN_EXPIRED, E.SESSION_REVOKED, E.ACCOUNT_BANNED,
          E.ACCOUNT_DEACTIVATED),
    429: (E.RATE_LIMITED,),
}
ADMIN_ERRORS: dict[int, Codes] = {403: (E.ADMIN_REQUIRED,)}
JSON_BODY_ERRORS: dict[int, Codes] = {400: (E.MALFORMED_JSON,), 413: (E.PAYLOAD_TOO_LARGE,)}
RAW_BODY_ERRORS: dict[int, Codes] = {413: (E.PAYLOAD_TOO_LARGE,)}
PARAMETER_ERRORS: dict[int, Codes] = {422: (E.VALIDATION_ERROR,)}

# Refusals of one route's own logic (services and routers), by (method, OpenAPI path).
CHAT = (E.CHAT_NOT_FOUND,)
CHAT_ADMIN = {404: CHAT, 403: (E.CHAT_ADMIN_REQUIRED,)}
MESSAGE = {404: (E.CHAT_NOT_FOUND, E.MESSAGE_NOT_FOUND)}
CONTENT = (E.E2E_REQUIRED, E.E2E_NOT_ALLOWED)
ADMIN_USER = {404: (E.USER_NOT_FOUND,)}
MEMBER_TARGET = {404: (E.CHAT_NOT_FOUND, E.USER_NOT_FOUND, E.NOT_A_MEMBER), 409: (E.WRONG_CHAT_KIND,)}
ROUTE_ERRORS: dict[tuple[str, str], dict[int, Codes]] = {
    ("POST", "/v1/auth/register"): {
        400: (E.INVALID_USERNAME, E.WEAK_PASSWORD),
        403: (E.REGISTRATION_CLOSED, E.REGISTRATION_TOKEN_REQUIRED, E.REGISTRATION_TOKEN_INVALID),
        409: (E.USERNAME_TAKEN,), 429: (E.RATE_LIMITED,)},
    ("POST", "/v1/auth/login"): {401: (E.INVALID_CREDENTIALS,), 403: (E.ACCOUNT_BANNED, E.ACCOUNT_DEACTIVATED),
                                 429: (E.RATE_LIMITED,)},
    ("POST", "/v1/auth/refresh"): {401: (E.INVALID_TOKEN, E.SESSION_REVOKED, E.REFRESH_TOKEN_REUSED,
                                         E.ACCOUNT_BANNED, E.ACCOUNT_DEACTIVATED),
                                   403: (E.ACCOUNT_BANNED, E.ACCOUNT_DEACTIVATED)},
    ("DELETE", "/v1/sessions/{session_id}"): {404: (E.SESSION_NOT_FOUND,)},
    ("PATCH", "/v1/account/profile"): {400: (E.VALIDATION_ERROR,)},
    ("POST", "/v1/account/password"): {400: (E.WEAK_PASSWORD,), 403: (E.INVALID_CREDENTIALS,)},
    ("PUT", "/v1/account/avatar"): {400: (E.INVALID_IMAGE,), 415: (E.UNSUPPORTED_MEDIA_TYPE,)},
    ("GET", "/v1/users/{username}"): {404: (E.USER_NOT_FOUND,)},
    ("GET", "/v1/users/{username}/avatar"): {404: (E.USER_NOT_FOUND, E.AVATAR_NOT_SET)},
    # admin
    ("GET", "/v1/admin/users/{username}"): ADMIN_USER,
    ("POST", "/v1/admin/users/{username}/ban"): {**ADMIN_USER, 400: (E.CANNOT_TARGET_SELF, E.VALIDATION_ERROR)},
    ("POST", "/v1/admin/users/{username}/unban"): ADMIN_USER,
    ("POST", "/v1/admin/users/{username}/deactivate"): {**ADMIN_USER, 400: (E.CANNOT_TARGET_SELF,)},
    ("POST", "/v1/admin/users/{username}/reset-password"): {**ADMIN_USER, 400: (E.WEAK_PASSWORD,)},
    ("POST", "/v1/admin/users/{username}/promote"): ADMIN_USER,
    ("POST", "/v1/admin/users/{username}/demote"): {**ADMIN_USER, 400: (E.CANNOT_TARGET_SELF,)},
    ("POST", "/v1/admin/users/{username}/sessions/revoke-all"): ADMIN_USER,
    ("DELETE", "/v1/admin/registration-tokens/{token}"): {404: (E.TOKEN_NOT_FOUND,)},
    ("PUT", "/v1/admin/chats/{chat_id}/retention"): {404: CHAT},
    # chats
    ("POST", "/v1/chats/direct"): {400: (E.CANNOT_DM_SELF,), 404: (E.USER_NOT_FOUND,)},
    ("POST", "/v1/chats"): {400: (E.GROUP_FULL,), 404: (E.USER_NOT_FOUND,)},
    ("GET", "/v1/chats/{chat_id}"): {404: CHAT},
    ("PATCH", "/v1/chats/{chat_id}"): {**CHAT_ADMIN, 409: (E.WRONG_CHAT_KIND,)},
    ("GET", "/v1/chats/{chat_id}/members"): {404: CHAT},
    ("POST", "/v1/chats/{chat_id}/members"): {
        **CHAT_ADMIN, 404: (E.CHAT_NOT_FOUND, E.USER_NOT_FOUND),
        409: (E.WRONG_CHAT_KIND, E.ALREADY_MEMBER, E.GROUP_FULL)},
    ("DELETE", "/v1/chats/{chat_id}/members/{username}"): {
        **MEMBER_TARGET, 403: (E.CHAT_ADMIN_REQUIRED, E.FORBIDDEN), 400: (E.CANNOT_TARGET_SELF,)},
    ("PUT", "/v1/chats/{chat_id}/members/{username}/role"): {
        **MEMBER_TARGET, 403: (E.CHAT_ADMIN_REQUIRED,), 400: (E.CANNOT_TARGET_SELF, E.VALIDATION_ERROR)},
    ("POST", "/v1/chats/{chat_id}/leave"): {404: CHAT, 409: (E.WRONG_CHAT_KIND, E.LAST_OWNER)},
    ("POST", "/v1/chats/{chat_id}/transfer"): {
        **MEMBER_TARGET, 403: (E.CHAT_ADMIN_REQUIRED,), 400: (E.CANNOT_TARGET_SELF,)},
    ("POST", "/v1/chats/{chat_id}/invites"): {**CHAT_ADMIN, 409: (E.WRONG_CHAT_KIND,)},
    ("GET", "/v1/chats/{chat_id}/invites"): CHAT_ADMIN,
    ("DELETE", "/v1/invites/{code}"): {404: (E.INVITE_NOT_FOUND,), 403: (E.CHAT_ADMIN_REQUIRED,)},
    ("POST", "/v1/invites/{code}/join"): {404: (E.INVITE_INVALID,), 409: (E.ALREADY_MEMBER, E.GROUP_FULL)},
    # messages
    ("POST", "/v1/chats/{chat_id}/messages"): {
        404: CHAT, 403: (E.CHANNEL_READ_ONLY,), 400: (*CONTENT, E.REPLY_NOT_FOUND), 409: (E.RECIPIENTS_CHANGED,),
        429: (E.SLOW_MODE,)},
    ("GET", "/v1/chats/{chat_id}/messages"): {404: CHAT},
    ("PATCH", "/v1/chats/{chat_id}/messages/{message_id}"): {**MESSAGE, 403: (E.NOT_AUTHOR,), 400: CONTENT,
                                                             409: (E.RECIPIENTS_CHANGED,)},
    ("DELETE", "/v1/chats/{chat_id}/messages/{message_id}"): {**MESSAGE, 403: (E.NOT_AUTHOR,)},
    ("PUT", "/v1/chats/{chat_id}/messages/{message_id}/reactions/{emoji}"): MESSAGE,
    ("DELETE", "/v1/chats/{chat_id}/messages/{message_id}/reactions/{emoji}"): MESSAGE,
    ("GET", "/v1/chats/{chat_id}/pins"): {404: CHAT},
    ("POST", "/v1/chats/{chat_id}/pins"): {**MESSAGE, 403: (E.CHAT_ADMIN_REQUIRED,)},
    ("DELETE", "/v1/chats/{chat_id}/pins/{message_id}"): {**MESSAGE, 403: (E.CHAT_ADMIN_REQUIRED,)},
    ("POST", "/v1/chats/{chat_id}/read"): {404: CHAT},
    ("POST", "/v1/chats/{chat_id}/calls/missed"): {404: CHAT},
    # scheduled messages and timers
    ("POST", "/v1/chats/{chat_id}/scheduled"): {
        404: CHAT, 403: (E.CHANNEL_READ_ONLY,), 400: (*CONTENT, E.VALIDATION_ERROR), 409: (E.VALIDATION_ERROR,)},
    ("DELETE", "/v1/scheduled/{scheduled_id}"): {404: (E.NOT_FOUND,)},
    ("PUT", "/v1/chats/{chat_id}/timer"): CHAT_ADMIN,
    # end-to-end keys
    ("POST", "/v1/keys/upload"): {400: (E.INVALID_KEYS,), 409: (E.INVALID_KEYS,)},
    ("POST", "/v1/to-device"): {404: (E.USER_NOT_FOUND,)},
    # web push
    ("POST", "/v1/push/subscriptions"): {400: (E.VALIDATION_ERROR,), 409: (E.VALIDATION_ERROR,)},
    ("DELETE", "/v1/push/subscriptions/{subscription_id}"): {404: (E.NOT_FOUND,)},
}

# Answers besides the route's declared status that carry the route's own body, not the error shape.
OTHER_ANSWERS: dict[tuple[str, str], dict[int, str]] = {
    ("POST", "/v1/chats/direct"): {200: "The direct chat already existed"},
    ("POST", "/v1/push/subscriptions"): {200: "This device had subscribed that endpoint: updated"},
    ("GET", "/readyz"): {503: "The database or Redis does not answer; the body names which"},
}


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _dependencies(dep)


def _depends_on(route: Any, target: Callable[..., Any] | object) -> bool:
    return any(dep.call is target for dep in _dependencies(route.dependant))


def _merge(into: dict[int, set[str]], more: dict[int, Codes]) -> None:
    for status, codes in more.items():
        into.setdefault(status, set()).update(str(c) for c in codes)


def route_errors(route: Any, method: str) -> dict[int, set[str]]:
    """Every error status this route (an ``APIRoute`` as served) can answer, with the codes each may carry."""
    errors: dict[int, set[str]] = {}
    if _depends_on(route, bearer_scheme):
        _merge(errors, TOKEN_ERRORS)
    if _depends_on(route, get_admin):
        _merge(errors, ADMIN_ERRORS)
    if route.body_field is not None:
        _merge(errors, JSON_BODY_ERRORS)
    elif "requestBody" in (route.openapi_extra or {}):
        _merge(errors, RAW_BODY_ERRORS)
    dependant = route.dependant
    if route.body_field is not None or any(
        d.path_params or d.query_params or d.header_params or d.cookie_params
        for d in (dependant, *_dependencies(dependant))
    ):
        _merge(errors, PARAMETER_ERRORS)
    _merge(errors, ROUTE_ERRORS.get((method, route.path_format), {}))
    return errors


def _error_response(status: int, codes: set[str]) -> dict[str, Any]:
    listed = ", ".join(f"`{c}`" for c in sorted(codes))
    response: dict[str, Any] = {
        "description": f"{TITLES.get(status, 'Error')}. Codes: {listed}.",
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }
    if status in HEADERS and (status != 401 or codes & set(TOKEN_ERRORS[401])):  # not login's 401
        response["headers"] = HEADERS[status]
    return response


def _error_schemas() -> dict[str, Any]:
    schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    defs = schema.pop("$defs", {})
    return {"ErrorResponse": schema, **defs}


def api_routes(app: FastAPI) -> Iterator[Any]:
    """The app's API routes as served (included routers flattened, their prefixes and dependencies applied),
    each with the ``APIRoute`` attributes: path_format, methods, dependant, body_field, status_code…"""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.include_in_schema:
            yield context


def tell_the_truth(schema: dict[str, Any], routes: Iterable[Any]) -> dict[str, Any]:
    """Rewrite FastAPI's document in place: our error shape and statuses on every operation."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(_error_schemas())
    for route in routes:
        for method in sorted(route.methods):
            operation = schema["paths"][route.path_format][method.lower()]
            responses = operation["responses"]
            responses.pop("422", None)  # FastAPI's {"detail": [...]}; ours comes below if it applies
            key = (method, route.path_format)
            success = responses.get(str(route.status_code or 200), {})
            for status, description in OTHER_ANSWERS.get(key, {}).items():
                responses[str(status)] = {**success, "description": description}
            for status, codes in route_errors(route, method).items():
                responses[str(status)] = _error_response(status, codes)
            operation["responses"] = dict(sorted(responses.items()))
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the truthful document (built once, on first request, after every router is included)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = tell_the_truth(FastAPI.openapi(app), api_routes(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
