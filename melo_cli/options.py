"""Options and value parsers shared by command groups (only Typer imported: keeps ``--help`` fast)."""

from datetime import datetime
from typing import Annotated, Any

import typer

from melo_cli.global_options import JSON_HELP, MeloTyper
from melo_protocol.timetext import parse_duration, parse_when

JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do it without asking (needed without a terminal)")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="print what would happen; change nothing")]
ChatArg = Annotated[
    str,
    typer.Argument(
        metavar="CHAT",
        help="a chat id, @username for your direct chat with them, or the exact title of your group or channel",
    ),
]

def duration_seconds(value: str | None, param_hint: str) -> int | None:
    """A duration option's text → seconds; bad text is a usage error (exit 2)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from None


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


def command_group(help: str) -> MeloTyper:
    """A command group as every melo group is made: plain Click help (no rich import: fast ``--help``);
    its commands take the global options after their name too."""
    return MeloTyper(help=help, no_args_is_help=True, rich_markup_mode=None)
