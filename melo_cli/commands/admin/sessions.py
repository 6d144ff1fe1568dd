"""``melo admin sessions``: end every session of one account."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.commands.admin.users import preview_user
from melo_cli.options import DryRunOpt, JsonOpt, YesOpt, command_group
from melo_cli.safety import guarded

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient

app = command_group("Sessions of any account.")


@app.command("revoke-all")
def revoke_all(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(metavar="USER", help="a username")],
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_flag: JsonOpt = False,
) -> None:
    """Log USER out everywhere: every session ends at once (REST and live streams). JSON: username, revoked."""
    application = get_app(ctx, json_flag)

    async def perform(client: "MeloClient") -> dict[str, Any]:
        return {"username": user, "revoked": await client.admin_revoke_user_sessions(user)}

    def summary(plan: dict[str, Any] | None) -> str:
        n = f"{plan['active_sessions']} " if plan else ""
        return f"revoke all {n}sessions of {user}"

    doc = guarded(application, action="sessions.revoke_all", summary=summary, yes=yes, dry_run=dry_run,
                  preview=lambda client: preview_user(client, user), perform=perform)
    application.output.emit(
        doc, lambda: application.output.result(f"Revoked {doc['revoked']} session(s) of {user}")
    )
