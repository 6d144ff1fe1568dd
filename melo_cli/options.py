"""Options and value parsers shared by command groups (only Typer imported: keeps ``--help`` fast)."""

import re
from datetime import datetime, time, timedelta
from typing import Annotated, Any

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document instead of text")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do it without asking (needed without a terminal)")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="print what would happen; change nothing")]
ChatArg = Annotated[
    str,
    typer.Argument(
        metavar="CHAT",
        help="a chat id, @username for your direct chat with them, or the exact title of your group or channel",
    ),
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> int:
    """"90" (seconds), "30m", "2h", "1d", "1w", "1h30m" → seconds. Raises ValueError."""
    value = text.strip().lower()
    if value.isdigit():
        return int(value)
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"invalid duration {text!r}: use e.g. 90s, 30m, 2h, 1d, 1w or 1h30m")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def duration_seconds(value: str | None, param_hint: str) -> int | None:
    """A duration option's text → seconds; bad text is a usage error (exit 2)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from None


_CLOCK_RE = re.compile(r"(?:(today|tomorrow)\s+)?(\d{1,2}):(\d{2})")
WHEN_HELP = (
    "when to send: ISO 8601 (2030-01-02T09:00, 2030-01-02 09:00+02:00, …Z; no zone = local time), "
    "+DURATION from now (+10m, +2h, +1d, +1h30m), or a local clock time: 09:00 (the next one), "
    "today 18:30, tomorrow 09:00"
)


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A --at TIME → a zoned datetime (see WHEN_HELP). Raises ValueError; the future is the server's check."""
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


def when_option(value: str | None, param_hint: str = "--at") -> datetime | None:
    """A time option's text → a zoned datetime; bad text is a usage error (exit 2)."""
    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def short_time(value: str | None) -> str:
    """"2026-01-02T03:04:05.6+00:00" → "2026-01-02 03:04" for tables (UTC, as the server sent it)."""
    return value[:16].replace("T", " ") if value else ""


def yes_no(value: Any) -> str:
    return "yes" if value else "no"


def command_group(help: str) -> typer.Typer:
    """A command group as every melo group is made: plain Click help (no rich import: fast ``--help``)."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)
