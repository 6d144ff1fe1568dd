"""Guard rails for destructive commands: --dry-run, --yes, and a confirmation prompt on a terminal.

Order: without a terminal and without --yes the command refuses at once (exit 2, nothing sent);
--dry-run prints the plan and exits 0 (read-only calls at most); on a terminal the user confirms.
"""

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from melo_cli.application import Application
from melo_cli.errors import ExitCode

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient

T = TypeVar("T")


def stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def needs_preview(app: Application, *, summary: str, yes: bool, dry_run: bool) -> bool:
    """Refuse now when no one can confirm; True when a read-only preview is wanted (dry run or prompt)."""
    if dry_run:
        return True
    if yes:
        return False
    if not stdin_is_tty():
        app.fail(
            f"refusing to {summary} without confirmation (stdin is not a terminal): "
            "pass --yes to do it, or --dry-run to see what would happen",
            code="confirmation_required",
            exit_code=ExitCode.USAGE,
        )
    return True


def confirm(
    app: Application,
    *,
    action: str,
    summary: str,
    yes: bool,
    dry_run: bool,
    plan: dict[str, Any] | None = None,
) -> None:
    """Return to go ahead. A dry run prints ``{"dry_run": true, "action", "would", …plan}`` and exits 0."""
    if dry_run:
        doc = {"dry_run": True, "action": action, "would": summary, **(plan or {})}
        app.output.emit(doc, lambda: app.output.result(f"Dry run: would {summary}. Nothing was changed."))
        raise typer.Exit(0)
    if yes:
        return
    if not stdin_is_tty():  # needs_preview normally refused already
        needs_preview(app, summary=summary, yes=yes, dry_run=dry_run)
    if not typer.confirm(f"{summary[:1].upper()}{summary[1:]}?", default=False, err=True):
        app.fail("aborted; nothing was changed", code="aborted", exit_code=ExitCode.USER_ERROR)


def guarded(
    app: Application,
    *,
    action: str,
    summary: Callable[[dict[str, Any] | None], str],
    yes: bool,
    dry_run: bool,
    preview: Callable[["MeloClient"], Awaitable[dict[str, Any]]] | None,
    perform: Callable[["MeloClient"], Awaitable[T]],
) -> T:
    """Run a destructive ``perform`` behind the guard rails.

    ``preview`` (read-only) feeds the prompt and the dry run, and fails early on an unknown target;
    ``summary(plan)`` says in words what will happen ("ban alice and revoke 2 sessions").
    """
    if needs_preview(app, summary=summary(None), yes=yes, dry_run=dry_run):
        plan = app.run(preview) if preview is not None else {}
        confirm(app, action=action, summary=summary(plan), yes=yes, dry_run=dry_run, plan=plan)
    return app.run(perform)
