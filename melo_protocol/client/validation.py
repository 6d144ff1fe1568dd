"""Refused values in the user's words: "message too long: 70,000 characters, at most 65,536".

Pydantic's errors name wire fields (``expires_in_seconds``) and hide limits in ``ctx``. The SDK says
which thing is wrong, by how much, and what the limit is, for values the wire models refuse before a
request is sent and for the server's ``422 validation_error`` (``details.errors``: loc, type, msg and
ctx's numeric limits). Pure functions; a given string value is never echoed (it may be a password),
only its length.
"""

from collections.abc import Iterable, Mapping
from typing import Any

# wire field → what people call it; the last element of an error's loc is looked up
FIELD_WORDS: dict[str, str] = {
    "text": "message",
    "ciphertext": "encrypted message",
    "expires_in_seconds": "invite expiry",
    "max_uses": "invite uses",
    "seconds": "timer",
    "slow_mode_seconds": "slow mode",
    "days": "retention",
    "send_at": "send time",
    "display_name": "display name",
    "bio": "bio",
    "title": "title",
    "description": "description",
    "username": "username",
    "password": "password",
    "current_password": "current password",
    "new_password": "new password",
    "registration_token": "registration token",
    "device_name": "device name",
    "reason": "reason",
    "emoji": "reaction",
    "members": "members",
    "reply_to": "reply-to message id",
    "txn_id": "transaction id",
    "endpoint": "push endpoint",
    "p256dh": "push key (p256dh)",
    "auth": "push auth secret",
}
SECONDS_FIELDS = frozenset({"expires_in_seconds", "seconds", "slow_mode_seconds"})
DAYS_FIELDS = frozenset({"days"})
_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"))


def _plural(n: int | float, unit: str) -> str:
    return f"{n:,} {unit}" + ("" if n == 1 else "s")


def duration_words(seconds: int | float) -> str:
    """31622400 → "366 days", 7200 → "2 hours", 90 → "90 seconds": the largest unit that divides it
    (limits are set in days, so days rather than weeks)."""
    if isinstance(seconds, int) and seconds > 0:
        for size, unit in _UNITS:
            if seconds % size == 0:
                return _plural(seconds // size, unit)
    return _plural(seconds, "second")


def _amount(field: str, value: Any) -> str:
    if field in SECONDS_FIELDS:
        return duration_words(value)
    if field in DAYS_FIELDS and isinstance(value, int | float):
        return _plural(value, "day")
    return f"{value:,}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def describe_error(error: Mapping[str, Any]) -> str:
    """One pydantic error (``exc.errors()`` item, or the server's {loc, type, msg, ctx}) in words."""
    loc = [str(p) for p in error.get("loc") or () if not isinstance(p, int)]
    field = loc[-1] if loc and loc[-1] != "body" else ""
    what = FIELD_WORDS.get(field, field.replace("_", " ")) or "request"
    kind = str(error.get("type") or "")
    ctx = error.get("ctx") or {}
    given = error.get("input")
    msg = str(error.get("msg") or "invalid value")
    count = len(given) if isinstance(given, str | list | tuple | dict) else None
    number = given if isinstance(given, int | float) and not isinstance(given, bool) else None

    if kind in ("value_error", "assertion_error"):
        # our validators word their own messages (check_text: "message too long: …")
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "missing":
        return f"{what} is missing"
    if kind == "string_too_long" and "max_length" in ctx:
        got = f" {count:,} characters," if count is not None else ""
        return f"{what} too long:{got} at most {ctx['max_length']:,}" + ("" if got else " characters")
    if kind == "string_too_short" and "min_length" in ctx:
        if ctx["min_length"] == 1:
            return f"{what} is empty"
        got = f" {count:,} characters," if count is not None else ""
        return f"{what} too short:{got} at least {ctx['min_length']:,}" + ("" if got else " characters")
    if kind in ("too_long", "too_short") and ("max_length" in ctx or "min_length" in ctx):
        got = f" {count:,}," if count is not None else ""
        if kind == "too_long":
            return f"too many {what}:{got} at most {ctx['max_length']:,}"
        return f"too few {what}:{got} at least {ctx['min_length']:,}"
    bound = next((k for k in ("le", "lt", "ge", "gt") if k in ctx), None)
    if bound is not None:
        timed = field in SECONDS_FIELDS or field in DAYS_FIELDS
        high = bound in ("le", "lt")
        adjective = ("too long" if high else "too short") if timed else ("too large" if high else "too small")
        got = f" {_amount(field, number)}," if number is not None else ""
        limit = {"le": "at most", "lt": "less than", "ge": "at least", "gt": "more than"}[bound]
        return f"{what} {adjective}:{got} {limit} {_amount(field, ctx[bound])}"
    return f"{what}: {msg[:1].lower()}{msg[1:]}"


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """Every error of one refusal, in words, each said once."""
    said: list[str] = []
    for error in errors:
        text = describe_error(error)
        if text not in said:
            said.append(text)
    return "; ".join(said) or "invalid request"

