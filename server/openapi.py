"""The OpenAPI document at /openapi.json, made to tell the truth about errors and tokens.

FastAPI alone describes 422 as its own ``{"detail": [...]}`` (which this server never sends) and no other
error. Here every error answer a route can give is declared with the one error shape (``ErrorResponse``)
and the codes it may carry:

- derived from the route itself: its token dependency (``bearer_scheme``, which also puts the bearer
  security requirement on it) → 401 and the per-user rate limit 429; the admin dependency → 403; a JSON
  body → 400 ``malformed_json`` and 413; any parameter or body → 422 ``validation_error``;
- the domain refusals of each route, from ``REFUSALS`` below, which mirrors the services' ``ApiError``
  raises (tests/server/test_openapi.py holds the table to what the server really answers); each code
  under its status in ``melo_protocol.wire.errors.HTTP_STATUS``, or another one ``ALSO_ANSWERED`` lists.

Other answers with the route's own body (an existing DM is 200, a new one 201; /readyz 503) are in
``OTHER_ANSWERS``.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from melo_protocol.wire import ErrorCode, ErrorResponse
from melo_protocol.wire.errors import ALSO_ANSWERED, HTTP_STATUS
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

# A refusal: a code, answered with its status in ``HTTP_STATUS``, or (status, code) for one of the other
# statuses ``ALSO_ANSWERED`` lists for that code.
Refusal = ErrorCode | tuple[int, ErrorCode]


def by_status(refusals: Iterable[Refusal]) -> dict[int, Codes]:
    """Refusals grouped by the status they are answered with."""
    out: dict[int, list[ErrorCode]] = {}
    for refusal in refusals:
        status, code = refusal if isinstance(refusal, tuple) else (HTTP_STATUS[refusal], refusal)
        if status != HTTP_STATUS[code] and status not in ALSO_ANSWERED.get(code, ()):
            raise ValueError(f"{code.value} is never answered with {status}")
        out.setdefault(status, []).append(code)
    return {status: tuple(codes) for status, codes in out.items()}


TOKEN_ERRORS = by_status(
    (
        E.UNAUTHENTICATED,
        E.INVALID_TOKEN,
        E.TOKEN_EXPIRED,
        E.SESSION_REVOKED,
        E.ACCOUNT_BANNED,
        E.ACCOUNT_DEACTIVATED,
        E.RATE_LIMITED,
    )
)
ADMIN_ERRORS = by_status((E.ADMIN_REQUIRED,))
JSON_BODY_ERRORS = by_status((E.MALFORMED_JSON, E.PAYLOAD_TOO_LARGE))
RAW_BODY_ERRORS = by_status((E.PAYLOAD_TOO_LARGE,))
PARAMETER_ERRORS = by_status((E.VALIDATION_ERROR,))

# Refusals of one route's own logic (services and routers), by (method, OpenAPI path).
CHAT = (E.CHAT_NOT_FOUND,)
CHAT_ADMIN = (*CHAT, E.CHAT_ADMIN_REQUIRED)
MESSAGE = (E.CHAT_NOT_FOUND, E.MESSAGE_NOT_FOUND)
CONTENT = (E.E2E_REQUIRED, E.E2E_NOT_ALLOWED)
ADMIN_USER = (E.USER_NOT_FOUND,)
MEMBER_TARGET = (E.CHAT_NOT_FOUND, E.USER_NOT_FOUND, E.NOT_A_MEMBER, E.WRONG_CHAT_KIND)
CHECKED_VALUE = (400, E.VALIDATION_ERROR)  # a value the route checks itself
REFUSALS: dict[tuple[str, str], tuple[Refusal, ...]] = {
    ("POST", "/v1/auth/register"): (
        E.INVALID_USERNAME,
        E.WEAK_PASSWORD,
        E.REGISTRATION_CLOSED,
        E.REGISTRATION_TOKEN_REQUIRED,
        E.REGISTRATION_TOKEN_INVALID,
        E.USERNAME_TAKEN,
        E.RATE_LIMITED,
    ),
    ("POST", "/v1/auth/login"): (
        E.INVALID_CREDENTIALS,
        (403, E.ACCOUNT_BANNED),
        (403, E.ACCOUNT_DEACTIVATED),
        E.RATE_LIMITED,
    ),
    ("POST", "/v1/auth/refresh"): (
        E.INVALID_TOKEN,
        E.SESSION_REVOKED,
        E.REFRESH_TOKEN_REUSED,
        E.ACCOUNT_BANNED,
        E.ACCOUNT_DEACTIVATED,
        (403, E.ACCOUNT_BANNED),
        (403, E.ACCOUNT_DEACTIVATED),
    ),
    ("DELETE", "/v1/sessions/{session_id}"): (E.SESSION_NOT_FOUND,),
    ("PATCH", "/v1/account/profile"): (CHECKED_VALUE,),
    ("POST", "/v1/account/password"): (E.WEAK_PASSWORD, (403, E.INVALID_CREDENTIALS)),
    ("PUT", "/v1/account/avatar"): (E.INVALID_IMAGE, E.UNSUPPORTED_MEDIA_TYPE),
    ("GET", "/v1/users/{username}"): (E.USER_NOT_FOUND,),
    ("GET", "/v1/users/{username}/avatar"): (E.USER_NOT_FOUND, E.AVATAR_NOT_SET),
    # admin
    ("GET", "/v1/admin/users/{username}"): ADMIN_USER,
    ("POST", "/v1/admin/users/{username}/ban"): (*ADMIN_USER, E.CANNOT_TARGET_SELF, CHECKED_VALUE),
    ("POST", "/v1/admin/users/{username}/unban"): ADMIN_USER,
    ("POST", "/v1/admin/users/{username}/deactivate"): (*ADMIN_USER, E.CANNOT_TARGET_SELF),
    ("POST", "/v1/admin/users/{username}/reset-password"): (*ADMIN_USER, E.WEAK_PASSWORD),
    ("POST", "/v1/admin/users/{username}/promote"): ADMIN_USER,
    ("POST", "/v1/admin/users/{username}/demote"): (*ADMIN_USER, E.CANNOT_TARGET_SELF),
    ("POST", "/v1/admin/users/{username}/sessions/revoke-all"): ADMIN_USER,
    ("DELETE", "/v1/admin/registration-tokens/{token}"): (E.TOKEN_NOT_FOUND,),
    ("PUT", "/v1/admin/chats/{chat_id}/retention"): CHAT,
    # chats
    ("POST", "/v1/chats/direct"): (E.CANNOT_DM_SELF, E.USER_NOT_FOUND),
    ("POST", "/v1/chats"): ((400, E.GROUP_FULL), E.USER_NOT_FOUND),
    ("GET", "/v1/chats/{chat_id}"): CHAT,
    ("PATCH", "/v1/chats/{chat_id}"): (*CHAT_ADMIN, E.WRONG_CHAT_KIND),
    ("GET", "/v1/chats/{chat_id}/members"): CHAT,
    ("POST", "/v1/chats/{chat_id}/members"): (
        *CHAT_ADMIN,
        E.USER_NOT_FOUND,
        E.WRONG_CHAT_KIND,
        E.ALREADY_MEMBER,
        E.GROUP_FULL,
    ),
    ("DELETE", "/v1/chats/{chat_id}/members/{username}"): (
        *MEMBER_TARGET,
        E.CHAT_ADMIN_REQUIRED,
        E.FORBIDDEN,
        E.CANNOT_TARGET_SELF,
    ),
    ("PUT", "/v1/chats/{chat_id}/members/{username}/role"): (
        *MEMBER_TARGET,
        E.CHAT_ADMIN_REQUIRED,
        E.CANNOT_TARGET_SELF,
        CHECKED_VALUE,
    ),
    ("POST", "/v1/chats/{chat_id}/leave"): (*CHAT, E.WRONG_CHAT_KIND, E.LAST_OWNER),
    ("POST", "/v1/chats/{chat_id}/transfer"): (*MEMBER_TARGET, E.CHAT_ADMIN_REQUIRED, E.CANNOT_TARGET_SELF),
    ("POST", "/v1/chats/{chat_id}/invites"): (*CHAT_ADMIN, E.WRONG_CHAT_KIND),
    ("GET", "/v1/chats/{chat_id}/invites"): CHAT_ADMIN,
    ("DELETE", "/v1/invites/{code}"): (E.INVITE_NOT_FOUND, E.CHAT_ADMIN_REQUIRED),
    ("POST", "/v1/invites/{code}/join"): (E.INVITE_INVALID, E.ALREADY_MEMBER, E.GROUP_FULL),
    # messages
    ("POST", "/v1/chats/{chat_id}/messages"): (
        *CHAT,
        E.CHANNEL_READ_ONLY,
        *CONTENT,
        E.REPLY_NOT_FOUND,
        E.RECIPIENTS_CHANGED,
        E.SLOW_MODE,
    ),
    ("GET", "/v1/chats/{chat_id}/messages"): CHAT,
    ("PATCH", "/v1/chats/{chat_id}/messages/{message_id}"): (*MESSAGE, E.NOT_AUTHOR, *CONTENT, E.RECIPIENTS_CHANGED),
    ("DELETE", "/v1/chats/{chat_id}/messages/{message_id}"): (*MESSAGE, E.NOT_AUTHOR),
    ("PUT", "/v1/chats/{chat_id}/messages/{message_id}/reactions/{emoji}"): MESSAGE,
    ("DELETE", "/v1/chats/{chat_id}/messages/{message_id}/reactions/{emoji}"): MESSAGE,
    ("GET", "/v1/chats/{chat_id}/pins"): CHAT,
    ("POST", "/v1/chats/{chat_id}/pins"): (*MESSAGE, E.CHAT_ADMIN_REQUIRED),
    ("DELETE", "/v1/chats/{chat_id}/pins/{message_id}"): (*MESSAGE, E.CHAT_ADMIN_REQUIRED),
    ("POST", "/v1/chats/{chat_id}/read"): CHAT,
    ("POST", "/v1/chats/{chat_id}/calls/missed"): CHAT,
    # scheduled messages and timers: a limit reached or a txn_id taken is 409 validation_error
    ("POST", "/v1/chats/{chat_id}/scheduled"): (
        *CHAT,
        E.CHANNEL_READ_ONLY,
        *CONTENT,
        CHECKED_VALUE,
        (409, E.VALIDATION_ERROR),
    ),
    ("DELETE", "/v1/scheduled/{scheduled_id}"): (E.NOT_FOUND,),
    ("PUT", "/v1/chats/{chat_id}/timer"): CHAT_ADMIN,
    # end-to-end keys: other identity keys for a device, or a concurrent upload, is 409 invalid_keys
    ("POST", "/v1/keys/upload"): (E.INVALID_KEYS, (409, E.INVALID_KEYS)),
    ("POST", "/v1/to-device"): (E.USER_NOT_FOUND,),
    # web push: a device's subscription limit reached is 409 validation_error
    ("POST", "/v1/push/subscriptions"): (CHECKED_VALUE, (409, E.VALIDATION_ERROR)),
    ("DELETE", "/v1/push/subscriptions/{subscription_id}"): (E.NOT_FOUND,),
}
ROUTE_ERRORS: dict[tuple[str, str], dict[int, Codes]] = {key: by_status(r) for key, r in REFUSALS.items()}

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
