"""``melo profile`` (show and set a public profile) and ``melo avatar`` (set or remove the picture)."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import JsonOpt, command_group, iso

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.wire import UserPublic

profile_app = command_group("Show and change public profiles.")
avatar_app = command_group("Set or remove your avatar (PNG, JPEG or WebP, at most 1 MiB).")

MAX_AVATAR_BYTES = 1024 * 1024


def user_doc(user: "UserPublic") -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "bio": user.bio,
        "has_avatar": user.avatar_etag is not None,
        "created_at": iso(user.created_at),
    }


@profile_app.command("show")
def show(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Argument(metavar="[USER]", help="whose profile (default: yours)")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """A profile: yours, or USER's.

    JSON keys: id, username, display_name, bio, has_avatar, created_at.
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        if user is None:
            return user_doc(await client.whoami())
        return user_doc(await client.get_user(user.removeprefix("@")))

    doc = application.run(go)
    out = application.output
    out.emit(
        doc,
        lambda: out.fields(
            [
                ("username", doc["username"]),
                ("display name", doc["display_name"]),
                ("bio", doc["bio"]),
                ("avatar", "yes" if doc["has_avatar"] else "no"),
                ("joined", doc["created_at"]),
            ]
        ),
    )


@profile_app.command("set")
def set_profile(
    ctx: typer.Context,
    display_name: Annotated[str | None, typer.Option("--display-name", help="the name people see")] = None,
    bio: Annotated[str | None, typer.Option("--bio", help="a short text about you (at most 280 characters)")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Change your display name and/or bio; prints the updated profile."""
    application = get_app(ctx, json_flag)
    if display_name is None and bio is None:
        raise typer.BadParameter("give --display-name and/or --bio", param_hint="options")

    async def go(client: "MeloClient") -> dict[str, Any]:
        return user_doc(await client.update_profile(display_name=display_name, bio=bio))

    doc = application.run(go)
    application.output.emit(doc, lambda: application.output.result(f"Updated the profile of {doc['username']}"))


def image_type(data: bytes) -> str | None:
    """The content type from the file's magic bytes (the server re-encodes and strips metadata)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@avatar_app.command("set")
def set_avatar(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(metavar="FILE", exists=True, dir_okay=False, readable=True, help="a PNG, JPEG or WebP")
    ],
    json_flag: JsonOpt = False,
) -> None:
    """Upload FILE as your avatar."""
    application = get_app(ctx, json_flag)
    data = file.read_bytes()
    if len(data) > MAX_AVATAR_BYTES:
        application.fail(f"{file} is {len(data)} bytes; avatars are at most 1 MiB", code="payload_too_large")
    content_type = image_type(data)
    if content_type is None:
        application.fail(f"{file} is not a PNG, JPEG or WebP image", code="invalid_image")

    async def go(client: "MeloClient") -> dict[str, Any]:
        return user_doc(await client.set_avatar(data, content_type))

    doc = application.run(go)
    application.output.emit(doc, lambda: application.output.result(f"Avatar set for {doc['username']}"))


@avatar_app.command("remove")
def remove_avatar(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """Remove your avatar."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return user_doc(await client.remove_avatar())

    doc = application.run(go)
    application.output.emit(doc, lambda: application.output.result(f"Avatar removed for {doc['username']}"))
