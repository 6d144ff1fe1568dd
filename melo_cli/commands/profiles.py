"""``melo profiles``: several servers and accounts side by side, one login per profile.

``melo --profile work login alice`` logs in under the profile "work"; ``melo profiles use work`` makes it
the profile later commands use when neither --profile nor MELO_PROFILE says otherwise.
"""

import json
from typing import Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import JsonOpt, command_group

app = command_group("Profiles: one login (server and account) each; pick the one commands use.")


def _profile_rows(home: Any) -> list[dict[str, Any]]:
    rows = []
    directory = home / "profiles"
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        if path.name.startswith("."):
            continue
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            rows.append({"name": path.stem, "server": meta.get("server_url"), "username": meta.get("username")})
    return rows


@app.command("list")
def list_profiles(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """Profiles with a login in this home; the one commands use now is marked.

    JSON: {"current": NAME, "profiles": [{"name", "server", "username", "current"}]}
    """
    application = get_app(ctx, json_flag)
    rows = _profile_rows(application.home_dir)
    for row in rows:
        row["current"] = row["name"] == application.profile
    doc = {"current": application.profile, "profiles": rows}
    out = application.output

    def human() -> None:
        if not rows:
            out.result(f"No profiles yet: `melo login USERNAME` creates '{application.profile}'.")
            return
        out.table(
            ["", "Profile", "Username", "Server"],
            [["*" if r["current"] else "", r["name"], r["username"], r["server"]] for r in rows],
            no_wrap=["Profile", "Server"],
        )

    out.emit(doc, human)


@app.command("use")
def use(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="a profile from `melo profiles list`")],
    json_flag: JsonOpt = False,
) -> None:
    """Make NAME the profile later commands use (--profile and MELO_PROFILE still win)."""
    from melo_cli.config import select_profile
    from melo_protocol.client.tokens import check_profile_name

    application = get_app(ctx, json_flag)
    try:
        check_profile_name(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="NAME") from None
    home = application.home_dir
    row = next((r for r in _profile_rows(home) if r["name"] == name), None)
    if row is None:
        application.fail(
            f"no profile named {name!r} here; create it with `melo --profile {name} login USERNAME`",
            code="profile_not_found",
        )
    select_profile(home, name)
    doc = {"current": name, "server": row["server"], "username": row["username"]}
    application.output.emit(
        doc, lambda: application.output.result(f"Using profile {name} ({row['username']} on {row['server']})")
    )
