"""Domain errors and the one place they become HTTP: ``{"error": {"code", "message", "details"}}``."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from melo_protocol.wire import ErrorCode
from melo_protocol.wire.errors import ALSO_ANSWERED, HTTP_STATUS

log = logging.getLogger("melo.errors")


class ApiError(Exception):
    """Raised by services; mapped to the error shape by one handler, with the code's HTTP status
    (``melo_protocol.wire.errors.HTTP_STATUS``).

    ``status`` is only for the few routes that answer a code with another status the protocol keeps
    (``ALSO_ANSWERED``); any other is a programming error.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        *,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        if status is not None and status != HTTP_STATUS[code] and status not in ALSO_ANSWERED.get(code, ()):
            raise ValueError(f"{code.value} is answered with {HTTP_STATUS[code]}, not {status}")
        self.status = HTTP_STATUS[code] if status is None else status
        self.code = str(code)
        self.message = message
        self.details = details or {}
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or {}}},
        status_code=status,
        headers=headers,
    )


_STATUS_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
}


_FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"
_LIMIT_KEYS = frozenset({"max_length", "min_length", "le", "lt", "ge", "gt"})


def _safe_validation_errors(exc: RequestValidationError) -> tuple[ErrorCode, list[dict[str, Any]]]:
    """Field paths and messages only: never echo the submitted values (they may be passwords)."""
    errors = []
    code = ErrorCode.VALIDATION_ERROR
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            code = ErrorCode.MALFORMED_JSON
        entry = {"loc": [str(p) for p in err.get("loc", ())], "type": err.get("type"), "msg": err.get("msg")}
        # the limit that was crossed (max_length, le…), so clients can say it; numbers only, never the value
        limits = {
            k: v
            for k, v in (err.get("ctx") or {}).items()
            if k in _LIMIT_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
        }
        if limits:
            entry["ctx"] = limits
        errors.append(entry)
    return code, errors


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        code, errors = _safe_validation_errors(exc)
        message = "request body is not valid JSON" if code == ErrorCode.MALFORMED_JSON else "invalid request"
        return error_response(HTTP_STATUS[code], code, message, {"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
        message = exc.detail if isinstance(exc.detail, str) else code.value
        if exc.status_code == 400 and message == _FASTAPI_BODY_PARSE_ERROR:
            # a body FastAPI could not decode at all (bad UTF-8, nesting too deep, a 5000-digit number)
            code, message = ErrorCode.MALFORMED_JSON, "request body is not valid JSON"
        details = getattr(exc, "details", None)
        return error_response(
            exc.status_code,
            code,
            message,
            details if isinstance(details, dict) else None,
            headers=getattr(exc, "headers", None),
        )

    # No handler for Exception: Starlette runs that one in its outermost middleware, which re-raises after
    # answering (uvicorn then logs the traceback again and drops the keep-alive connection), and outside
    # RequestContextMiddleware (no X-Request-ID, no request id in the log). That middleware answers with
    # internal_error() instead.


def log_unhandled(exc: Exception) -> None:
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)


def internal_error(exc: Exception) -> JSONResponse:
    """The answer to an exception no handler knew: logged with its traceback, never shown to the client."""
    log_unhandled(exc)
    return error_response(HTTP_STATUS[ErrorCode.INTERNAL], ErrorCode.INTERNAL, "internal server error")
