"""``melo admin keys``: the JWT signing keys and the at-rest data keys; list and rotate."""

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.errors import CliError, ExitCode
from melo_cli.options import DryRunOpt, JsonOpt, YesOpt, command_group, iso, short_time
from melo_cli.safety import guarded

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.wire import AdminKeyOut

app = command_group("Server keys: JWT signing keys and at-rest data keys.")


def key_doc(key: "AdminKeyOut") -> dict[str, Any]:
    return {
        "kid": key.kid,
        "kind": key.kind,
        "active": key.active,
        "created_at": iso(key.created_at),
        "activates_at": iso(key.activates_at),
        "retired_at": iso(key.retired_at),
    }


def _seconds(value: str) -> str:
    return value[:19].replace("T", " ")


def _is_future(value: str) -> bool:
    return datetime.fromisoformat(value) > datetime.now(UTC)


def active_label(key: dict[str, Any]) -> str:
    """yes, no, or when a new JWT key will be used: it is published first, then used by every worker."""
    if key["active"]:
        return "yes"
    if key["kind"] == "jwt" and key["activates_at"] is None and key["retired_at"] is None:
        return "published, not scheduled"  # a rotation stopped before it set the activation time
    if key["activates_at"] is not None and _is_future(key["activates_at"]):
        return f"from {_seconds(key['activates_at'])}"
    return "no"


def retirement_label(key: dict[str, Any]) -> str:
    """A retirement in the future is one to come: the key still verifies what it signed until then."""
    when = key["retired_at"]
    if when is None:
        return ""
    return f"retires at {short_time(when)}" if _is_future(when) else f"retired {short_time(when)}"


@app.command("list")
def list_keys(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """Keys by kind; the one in use for each kind is active. Public parts only, never key material.

    A new JWT key is published first and used from its activation time on; an old one stays published
    until it retires (shown as "retires at" while that is still to come).

    JSON: {"keys": [{"kid", "kind", "active", "created_at", "activates_at", "retired_at"}]}
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return {"keys": [key_doc(k) for k in (await client.admin_list_keys()).keys]}

    doc = application.run(go)
    out = application.output
    out.emit(
        doc,
        lambda: out.table(
            ["Kid", "Kind", "Active", "Created", "Retirement"],
            [[k["kid"], k["kind"], active_label(k), short_time(k["created_at"]), retirement_label(k)]
             for k in doc["keys"]],
            no_wrap=["Kid"],
        ),
    )


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    jwt: Annotated[bool, typer.Option("--jwt", help="a new JWT signing key (old tokens work until expiry)")] = False,
    data: Annotated[
        bool, typer.Option("--data", help="a new at-rest data key (older data is re-encrypted in the background)")
    ] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_flag: JsonOpt = False,
) -> None:
    """Rotate server keys: say which with --jwt and/or --data.

    A new JWT key is published in JWKS at once and used from its activation time (activates_at, a few
    seconds later, when every server worker publishes it); existing logins keep working. JSON:
    {"rotated": [key…], "reencrypt_pending": n}.
    """
    application = get_app(ctx, json_flag)
    if not (jwt or data):
        raise typer.BadParameter("say which keys to rotate: --jwt, --data, or both", param_hint="--jwt/--data")
    kinds = [k for k, on in (("jwt", jwt), ("data", data)) if on]
    what = " and ".join({"jwt": "the JWT signing key", "data": "the at-rest data key"}[k] for k in kinds)

    async def preview(client: "MeloClient") -> dict[str, Any]:
        keys = [key_doc(k) for k in (await client.admin_list_keys()).keys]
        return {"kinds": kinds, "active": [k for k in keys if k["active"]]}

    async def perform(client: "MeloClient") -> dict[str, Any]:
        from melo_protocol.client import BadRequest

        try:
            result = await client.admin_rotate_keys(jwt=jwt, data=data)
        except BadRequest as exc:
            if data and exc.status == 422:
                raise CliError(
                    "this server cannot rotate the at-rest data key yet (it refused the 'data' option); "
                    "upgrade the server, or rotate the JWT key alone with --jwt",
                    code="data_key_rotation_unsupported",
                    exit_code=ExitCode.USER_ERROR,
                ) from None
            raise
        return {
            "rotated": [key_doc(k) for k in result.rotated],
            "reencrypt_pending": int(getattr(result, "reencrypt_pending", 0) or 0),
        }

    doc = guarded(application, action="keys.rotate", summary=lambda plan: f"rotate {what}", yes=yes,
                  dry_run=dry_run, preview=preview, perform=perform)
    out = application.output

    def human() -> None:
        for key in doc["rotated"]:
            if key["active"] or key["activates_at"] is None:
                out.result(f"New {key['kind']} key {key['kid']} is active")
            else:
                out.result(f"New {key['kind']} key {key['kid']} is published; servers sign with it from "
                           f"{_seconds(key['activates_at'])} UTC")
        if doc["reencrypt_pending"]:
            out.result(f"{doc['reencrypt_pending']} stored rows are being re-encrypted in the background")

    out.emit(doc, human)
