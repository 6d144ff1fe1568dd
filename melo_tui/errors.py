"""The one wording of SDK errors in the TUI: what a failed action's notification says, and how loud.

Every worker that calls the SDK names what it was doing ("Loading chats", "/timer"); when the SDK raises a
``MeloError``, ``ui_work`` looks the error up here once. A code the server sent picks its wording first,
then the error's class, then the default, which always quotes the server's (cleaned) message.
"""

from dataclasses import dataclass

from textual.notifications import SeverityLevel

from melo_protocol.client.errors import (
    ApiError,
    ClientError,
    Forbidden,
    MeloError,
    NotLoggedIn,
    RateLimited,
    SessionRevoked,
)
from melo_protocol.wire import ErrorCode
from melo_tui.sanitize import clean_line

REASON_CHARS = 200


@dataclass(frozen=True)
class Wording:
    text: str  # fields: {what} the action, {reason} the server's message (cleaned)
    severity: SeverityLevel = "error"


DEFAULT = Wording("{what} failed: {reason}")

# A refusal the user can act on is a warning; anything else is an error.
BY_CODE: dict[str, Wording] = {
    ErrorCode.SLOW_MODE: Wording("{what} was held back by slow mode: {reason}", "warning"),
    ErrorCode.CHANNEL_READ_ONLY: Wording("{what} was refused: only admins post in this channel ({reason})", "warning"),
}

# In order: the first class the error is an instance of wins.
BY_CLASS: tuple[tuple[type[MeloError], Wording], ...] = (
    (Forbidden, Wording("{what} was refused: {reason}", "warning")),
    (RateLimited, Wording("{what} failed, too many requests: {reason}. Try again in a moment.", "warning")),
    (SessionRevoked, Wording("{what} failed: {reason}. This session has ended; log in again.")),
    (NotLoggedIn, Wording("{what} failed: {reason}. Log in first.")),
)


def reason_of(exc: MeloError) -> str:
    """The server's message as shown: one line, no control characters, the code after it when there is one."""
    code = exc.code if isinstance(exc, ApiError | ClientError) else None
    text = exc.message if code is None or code in exc.message else f"{exc.message} ({code})"
    return clean_line(text, REASON_CHARS)


def wording_for(exc: MeloError) -> Wording:
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code in BY_CODE:
        return BY_CODE[code]
    for kind, wording in BY_CLASS:
        if isinstance(exc, kind):
            return wording
    return DEFAULT


def describe(what: str, exc: MeloError) -> tuple[str, SeverityLevel]:
    """The notification for ``exc`` raised while doing ``what``: (text, severity)."""
    wording = wording_for(exc)
    return wording.text.format(what=what, reason=reason_of(exc)), wording.severity
