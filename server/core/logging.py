"""Structured (JSON) logs with a request id; secrets never reach them.

Nothing here logs request bodies, headers or query strings: tokens and passwords travel only there.
"""

import contextvars
import json
import logging
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from melo_protocol.wire.errors import HTTP_STATUS, ErrorCode
from server.core.errors import internal_error, log_unhandled
from server.core.metrics import Metrics

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# attributes every record has, and uvicorn's copy of its message with terminal colour codes
_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


# Loggers written at the configured level; everything else (asyncio, libraries) reaches the root at WARNING.
# uvicorn.error carries uvicorn's own tracebacks ("Exception in ASGI application"): through our handler they
# are JSON lines too, never plain text in the middle of the log.
SERVER_LOGGERS = ("melo", "uvicorn", "uvicorn.error")


def configure_logging(level: str = "info", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # uvicorn's access log prints the raw request line; ours (below) prints the path only.
    logging.getLogger("uvicorn.access").disabled = True


access_log = logging.getLogger("melo.access")


class RequestContextMiddleware:
    """Assigns a request id (echoed as X-Request-ID), logs one access line per request,
    and refuses bodies over the limit before the app reads them."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, large_body_paths: dict[str, int], metrics: Metrics | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.large_body_paths = large_body_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status_holder = {"status": 0}
        limit = self.large_body_paths.get(scope["path"], self.max_body_bytes)

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            self._log(scope, await _send_too_large(send, rid, limit), start)
            request_id_var.reset(token)
            return
        if _has_control_chars(scope):
            # No route takes control characters in its path or a NUL in its query; PostgreSQL cannot
            # even compare a NUL, so refuse them here rather than as a 500 deep in some query.
            status = await _send_error(
                send, rid, ErrorCode.BAD_REQUEST, "request path or query contains control characters"
            )
            self._log(scope, status, start)
            request_id_var.reset(token)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            if status_holder["status"] == 0:
                status_holder["status"] = await _send_too_large(send, rid, limit)
        except Exception as exc:
            # Answered here, not re-raised: the request id is still set for the log line and the header,
            # the status is known to the access log and metrics, and the keep-alive connection survives.
            if status_holder["status"] == 0:
                await internal_error(exc)(scope, limited_receive, send_with_id)
            else:
                # The answer had begun (a stream failed, or a background task after the answer): nothing to
                # answer. uvicorn closes a connection whose answer was cut short, and keeps a complete one.
                log_unhandled(exc)
        finally:
            self._log(scope, status_holder["status"], start)
            request_id_var.reset(token)

    def _log(self, scope: Scope, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        route = getattr(scope.get("route"), "path", None)
        if self.metrics is not None:
            name = route or "unmatched"
            self.metrics.requests.labels(scope.get("method"), name, str(status)).inc()
            self.metrics.latency.labels(scope.get("method"), name).observe(elapsed)
        # The route template, not the concrete path: path parameters can be secrets
        # (DELETE /v1/admin/registration-tokens/{token}). Unmatched paths are logged cut short.
        path = route or _printable(scope.get("path") or "")[:200]
        access_log.info(
            "%s %s %s",
            scope.get("method"),
            path,
            status,
            extra={
                "method": scope.get("method"),
                "path": path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )


class _BodyTooLarge(HTTPException):
    """An HTTPException so that FastAPI's body parsing re-raises it instead of answering 400;
    its ``details`` reach the error shape like those of the Content-Length refusal."""

    def __init__(self, limit: int) -> None:
        super().__init__(HTTP_STATUS[ErrorCode.PAYLOAD_TOO_LARGE], "request body too large")
        self.details = {"max_bytes": limit}


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _has_control_chars(scope: Scope) -> bool:
    path: str = scope.get("path") or ""
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return True
    query: bytes = scope.get("query_string") or b""
    return b"%00" in query or b"\x00" in query


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_too_large(send: Send, rid: str, limit: int) -> int:
    return await _send_error(send, rid, ErrorCode.PAYLOAD_TOO_LARGE, "request body too large", {"max_bytes": limit})


async def _send_error(
    send: Send, rid: str, code: ErrorCode, message: str, details: dict[str, Any] | None = None
) -> int:
    """Answer with the error shape and the code's status (returned), outside the app."""
    status = HTTP_STATUS[code]
    body = json.dumps({"error": {"code": code, "message": message, "details": details or {}}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", rid.encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
    return status
