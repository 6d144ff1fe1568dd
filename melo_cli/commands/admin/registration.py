"""``melo admin registration [open|closed|token]`` and ``melo admin tokens``: who may create accounts.

Registration tokens are invitations meant to be handed out, so ``tokens create`` prints the token
once; ``tokens list`` shows only its first characters, and ``tokens revoke`` accepts a unique prefix.
"""

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import DryRunOpt, JsonOpt, YesOpt, command_group, duration_seconds, iso, short_time
from melo_cli.safety import guarded

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.wire import RegistrationTokenOut

tokens_app = command_group("Registration tokens: invitations to create an account in 'token' mode.")
PREFIX_LEN = 6
MIN_PREFIX_LEN = 4


class Mode(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    TOKEN = "token"  # noqa: S105 - a mode name, not a secret


def registration(
    ctx: typer.Context,
    mode: Annotated[
        Mode | None,
        typer.Argument(metavar="[open|closed|token]", help="the new mode; without it, show the current one"),
    ] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_flag: JsonOpt = False,
) -> None:
    """Show or set who may register: anyone (open), nobody (closed), or holders of a token (token).

    Closing registration asks first (or needs --yes). JSON: {"mode": …} (and "previous" when set).
    """
    application = get_app(ctx, json_flag)
    out = application.output
    if mode is None:
        async def show(client: "MeloClient") -> dict[str, Any]:
            return {"mode": str(await client.admin_get_registration())}

        doc = application.run(show)
        out.emit(doc, lambda: out.result(f"Registration is {doc['mode']}"))
        return

    async def preview(client: "MeloClient") -> dict[str, Any]:
        return {"previous": str(await client.admin_get_registration()), "mode": mode.value}

    async def perform(client: "MeloClient") -> dict[str, Any]:
        previous = str(await client.admin_get_registration())
        return {"mode": str(await client.admin_set_registration(mode.value)), "previous": previous}

    # Only closing locks people out; opening or requiring tokens goes ahead without a prompt.
    doc = guarded(
        application,
        action="registration.set",
        summary=lambda plan: f"set registration to {mode.value}"
        + (f" (now {plan['previous']})" if plan else ""),
        yes=yes or mode is not Mode.CLOSED,
        dry_run=dry_run,
        preview=preview,
        perform=perform,
    )
    out.emit(doc, lambda: out.result(f"Registration is now {doc['mode']} (was {doc['previous']})"))


def token_doc(token: "RegistrationTokenOut", *, full: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"token": token.token} if full else {"token_prefix": token.token[:PREFIX_LEN]}
    doc.update(
        {
            "created_at": iso(token.created_at),
            "expires_at": iso(token.expires_at),
            "max_uses": token.max_uses,
            "uses": token.uses,
            "revoked": token.revoked,
        }
    )
    return doc


@tokens_app.command("create")
def create(
    ctx: typer.Context,
    expires: Annotated[str | None, typer.Option("--expires", help="valid for e.g. 1h, 7d (default: forever)")] = None,
    uses: Annotated[int | None, typer.Option("--uses", min=1, help="how many accounts it may create")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Create a registration token and print it (the only time it is shown in full).

    JSON keys: token, created_at, expires_at, max_uses, uses, revoked.
    """
    application = get_app(ctx, json_flag)
    seconds = duration_seconds(expires, "--expires")

    async def go(client: "MeloClient") -> dict[str, Any]:
        return token_doc(await client.admin_create_token(seconds, uses), full=True)

    doc = application.run(go)
    out = application.output

    def human() -> None:
        out.info("Registration token (shown once; `melo register USER --registration-token TOKEN`):")
        out.out.print(doc["token"], markup=False)

    out.emit(doc, human)


@tokens_app.command("list")
def list_tokens(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """Registration tokens, by their first characters (enough for `tokens revoke`).

    JSON: {"tokens": [{"token_prefix", "created_at", "expires_at", "max_uses", "uses", "revoked"}]}
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return {"tokens": [token_doc(t, full=False) for t in await client.admin_list_tokens()]}

    doc = application.run(go)
    out = application.output
    out.emit(
        doc,
        lambda: out.table(
            ["Token", "Uses", "Max uses", "Expires", "Status"],
            [[t["token_prefix"] + "…", t["uses"], t["max_uses"] or "∞", short_time(t["expires_at"]) or "never",
              "revoked" if t["revoked"] else "active"] for t in doc["tokens"]],
            no_wrap=["Token"],
        ),
    )


async def find_token(client: "MeloClient", given: str) -> str:
    """The full token ``given`` names: itself, or the one token it is a prefix of."""
    from melo_cli.resolve import by_prefix

    return by_prefix(given, [t.token for t in await client.admin_list_tokens()], what="registration token",
                     not_found="registration_token_not_found", ambiguous="ambiguous_token",
                     min_length=MIN_PREFIX_LEN, secret=True)


@tokens_app.command("revoke")
def revoke(
    ctx: typer.Context,
    token: Annotated[str, typer.Argument(metavar="TOKEN", help="the token, or its first characters")],
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_flag: JsonOpt = False,
) -> None:
    """Revoke a registration token; it creates no more accounts. JSON: the keys of `tokens list`."""
    application = get_app(ctx, json_flag)

    async def preview(client: "MeloClient") -> dict[str, Any]:
        full = await find_token(client, token)
        return {"token_prefix": full[:PREFIX_LEN]}

    async def perform(client: "MeloClient") -> dict[str, Any]:
        return token_doc(await client.admin_revoke_token(await find_token(client, token)), full=False)

    doc = guarded(
        application,
        action="tokens.revoke",
        summary=lambda plan: f"revoke registration token {(plan or {}).get('token_prefix', token[:PREFIX_LEN])}…",
        yes=yes,
        dry_run=dry_run,
        preview=preview,
        perform=perform,
    )
    application.output.emit(
        doc, lambda: application.output.result(f"Revoked registration token {doc['token_prefix']}…")
    )
