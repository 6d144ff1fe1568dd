"""Durations and times as people type them ("1h30m", "+10m", "tomorrow 09:00"): shared by the CLI and the TUI.

Pure functions, no I/O: each raises ``ValueError`` with a message fit to show the user.
"""

import re
from datetime import datetime, time, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"(\d+)([smhdw])")
_CLOCK_RE = re.compile(r"(?:(today|tomorrow)\s+)?(\d{1,2}):(\d{2})")
WHEN_HELP = (
    "when to send, after now and at most 366 days ahead: ISO 8601 (YYYY-MM-DDTHH:MM, or with a zone: "
    "…+02:00, …Z; no zone = local time), +DURATION from now (+10m, +2h, +1d, +1h30m), or a local clock "
    "time: 09:00 (the next one), today 18:30, tomorrow 09:00"
)


def parse_duration(text: str) -> int:
    """"90" (seconds), "30m", "2h", "1d", "1w", "1h30m" → seconds. Raises ValueError."""
    value = text.strip().lower()
    if value.isdigit():
        return int(value)
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"invalid duration {text!r}: use e.g. 90s, 30m, 2h, 1d, 1w or 1h30m")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def human_duration(seconds: int) -> str:
    """3600 → "1h", 5400 → "1h30m", 90 → "1m30s" (the forms parse_duration reads)."""
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A time to send at → a zoned datetime (see WHEN_HELP). Raises ValueError; the future is the server's check."""
    value = " ".join(text.strip().split())
    local_now = (now or datetime.now().astimezone()).astimezone()
    if value.startswith("+") or value.lower().startswith("in "):
        return local_now + timedelta(seconds=parse_duration(value.lstrip("+").removeprefix("in ").strip()))
    clock = _CLOCK_RE.fullmatch(value.lower())
    if clock:
        day, hour, minute = clock.group(1), int(clock.group(2)), int(clock.group(3))
        if hour > 23 or minute > 59:
            raise ValueError(f"invalid time of day {text!r}")
        at = datetime.combine(local_now.date(), time(hour, minute), local_now.tzinfo)
        if day == "tomorrow" or (day is None and at <= local_now):
            at += timedelta(days=1)
        return at
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"invalid time {text!r}: {WHEN_HELP}") from None
    return at if at.tzinfo is not None else at.astimezone()  # naive: this machine's local time


def split_when(text: str) -> tuple[str, str]:
    """"+10m hello" → ("+10m", "hello"); "tomorrow 09:00 hi" → ("tomorrow 09:00", "hi"): the time, the rest."""
    words = text.split(maxsplit=2)
    if len(words) >= 2 and words[0].lower() in ("today", "tomorrow", "in"):
        return " ".join(words[:2]), words[2] if len(words) > 2 else ""
    head, _, rest = text.strip().partition(" ")
    return head, rest.strip()
