"""``melo-server``: run, migrate, create-admin, keys rotate, check (commands for the server host)."""

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

# Never print a traceback's local variables: create-admin holds a password in one.
app = typer.Typer(
    help="Melo server commands (run on the server host).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
keys_app = typer.Typer(help="Signing and data keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file", exists=True, dir_okay=False, envvar="MELO_CONFIG_FILE"),
]


def _settings(config: Path | None, **overrides: object):  # type: ignore[no-untyped-def]
    from pydantic import ValidationError

    from server.config import load_settings

    try:
        return load_settings(config, **overrides)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            typer.echo(f"melo-server: invalid settings: {loc + ': ' if loc else ''}{msg}", err=True)
        raise typer.Exit(2) from None


async def _prepare(settings) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
    """Migrate and make first keys once, in the parent, before any worker starts."""
    from server.app import close_state, open_state
    from server.db.migrate import upgrade_async

    if settings.migrate_on_start:
        await upgrade_async(settings.effective_database_url)
    state = await open_state(settings)
    await close_state(state)


@app.command()
def run(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8088)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes; more than one needs Redis")] = None,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="do not apply migrations at start")] = False,
) -> None:
    """Serve HTTP and WebSocket on one port."""
    import logging

    import uvicorn

    from server.asgi import uvicorn_options
    from server.core.logging import configure_logging

    settings = _settings(config, host=host, port=port, workers=workers, migrate_on_start=False if no_migrate else None)
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(_prepare(settings))
    # Workers rebuild the same settings from the environment; the parent already migrated.
    for name, value in settings.model_dump(mode="json", exclude_none=True).items():
        secret = getattr(settings, name)
        if hasattr(secret, "get_secret_value"):  # dumped as "**********": hand workers the real value
            value = secret.get_secret_value()
        if isinstance(value, list | dict):
            value = json.dumps(value)
        os.environ["MELO_" + name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    os.environ["MELO_MIGRATE_ON_START"] = "false"
    if config is not None:
        os.environ.pop("MELO_CONFIG_FILE", None)
    # a log line like every other (stderr is one JSON object a line), not a bare print
    logging.getLogger("melo.server").info(
        "melo-server listening on http://%s:%s (data: %s, database: %s, bus: %s)",
        settings.host,
        settings.port,
        settings.data_dir,
        settings.effective_database_url.split("://")[0],
        "redis" if settings.redis_url else "in-process",
    )
    uvicorn.run(
        "server.asgi:make_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        **uvicorn_options(settings),
    )


@app.command()
def migrate(config: ConfigOpt = None) -> None:
    """Apply database migrations."""
    from server.db.migrate import upgrade

    settings = _settings(config)
    upgrade(settings.effective_database_url)
    typer.echo("database is up to date", err=True)


def _has_account(settings, name: str) -> bool:  # type: ignore[no-untyped-def]  # noqa: ANN001
    """Whether ``name`` has an account, creating nothing: no SQLite file, no tables, no secret."""
    from sqlalchemy import inspect, select
    from sqlalchemy.engine import make_url

    from server.db.engine import async_url, create_engine
    from server.db.models import User

    url = settings.effective_database_url
    parsed = make_url(async_url(url))
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).is_file()):
        return False

    async def look() -> bool:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                if not await conn.run_sync(lambda c: inspect(c).has_table("users")):
                    return False
                return (await conn.execute(select(User.id).where(User.username == name))).first() is not None
        finally:
            await engine.dispose()

    return asyncio.run(look())


@app.command("create-admin")
def create_admin(
    username: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    reset_password: Annotated[
        bool,
        typer.Option("--reset-password", help="the user exists: replace their password and revoke all their sessions"),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Make USERNAME an admin, creating the account if there is none.

    A new account's password comes from stdin (--password-stdin) or a hidden prompt, never argv. An
    existing user keeps their password and sessions (no password is read); --reset-password reads a new
    one the same way, replaces theirs and revokes every session of theirs. Recorded in the audit log
    with the actor "host". A refused username or password leaves nothing behind (no database, no
    secret.key).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from server.core.errors import ApiError

    settings = _settings(config)

    def fail(message: str) -> NoReturn:
        typer.echo(f"melo-server: {message}", err=True)
        raise typer.Exit(1)

    async def go(name: str, password: str | None) -> dict[str, object]:
        from server.admin.service import create_admin_on_host
        from server.app import close_state, open_state
        from server.db.migrate import upgrade_async

        await upgrade_async(settings.effective_database_url)
        state = await open_state(settings)
        try:
            return await create_admin_on_host(
                name,
                password,
                replace_password=reset_password,
                sessions=state.sessions,
                passwords=state.passwords,
                revocations=state.revocations,
            )
        finally:
            await close_state(state)

    try:
        from server.accounts.service import canonical_username
        from server.core.passwords import password_problem

        name = canonical_username(username)
        password = None
        if reset_password or not _has_account(settings, name):
            if password_stdin:
                password = sys.stdin.readline().rstrip("\r\n")
            else:
                password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
            problem = password_problem(password, name)
            if problem:  # checked before anything exists, so a refusal leaves no database behind
                fail(problem)
        elif password_stdin:
            typer.echo(
                f"melo-server: {name} has an account: their password is kept (--reset-password "
                "replaces it); stdin was not read",
                err=True,
            )
        done = asyncio.run(go(name, password))
    except ApiError as exc:
        fail(exc.message)
    except (OSError, SQLAlchemyError) as exc:
        fail(f"cannot reach the database ({type(exc).__name__})")
    if done["created"]:
        typer.echo(f"admin {done['username']} created (id {done['id']})", err=True)
    elif done["password_replaced"]:
        typer.echo(
            f"admin {done['username']} ready (id {done['id']}): password replaced, "
            f"{done['sessions_revoked']} session(s) revoked",
            err=True,
        )
    else:
        was = "was already" if done["was_admin"] else "is now"
        typer.echo(f"{done['username']} {was} an admin (id {done['id']}); password and sessions kept", err=True)


@keys_app.command("rotate")
def keys_rotate(
    config: ConfigOpt = None,
    jwt: Annotated[bool, typer.Option("--jwt/--no-jwt", help="rotate the JWT signing key")] = True,
    data: Annotated[bool, typer.Option("--data", help="rotate the at-rest data key and re-encrypt")] = False,
) -> None:
    """New JWT signing key, published at once and used by every worker from MELO_JWT_KEY_PROPAGATION_S
    later (old tokens verify until they expire); with --data also a new at-rest data key: every sealed
    row is re-encrypted, then the old key is retired. Recorded in the audit log with the actor "host"."""
    settings = _settings(config)
    kinds = ",".join(k for k, on in (("jwt", jwt), ("data", data)) if on)

    async def go() -> None:
        from server.admin.service import audited
        from server.app import close_state, open_state

        state = await open_state(settings)
        details: dict[str, object] = {}

        async def rotate() -> None:
            data_row = None
            if jwt:
                row = await state.keys.rotate()
                assert row.activates_at is not None
                details.update(jwt=row.kid, activates_at=row.activates_at.isoformat())
                typer.echo(
                    f"new JWT signing key {row.kid} is published; servers sign with it from "
                    f"{row.activates_at:%Y-%m-%d %H:%M:%S} UTC",
                    err=True,
                )
            if data:
                data_row = await state.data_keys.rotate()
                details["data"] = data_row.kid
            await state.announce_key_rotation()  # running workers reload their rings at once (Redis)
            if data_row is not None:
                moved = await state.data_keys.reencrypt()
                details["reencrypted"] = moved
                typer.echo(f"new data key {data_row.kid} is active; {moved} rows re-encrypted", err=True)

        try:
            if kinds:
                await audited(None, "keys.rotate", kinds, rotate, details, sessions=state.sessions)
        finally:
            await close_state(state)

    asyncio.run(go())


@app.command()
def check(config: ConfigOpt = None) -> None:
    """Validate settings and reach the database and Redis; exit 0 when all is well."""
    from sqlalchemy import text

    settings = _settings(config)

    async def go() -> bool:
        from redis.asyncio import Redis

        from server.db.engine import create_engine

        ok = True
        database = _without_password(settings.effective_database_url)
        engine = create_engine(settings.effective_database_url)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            typer.echo(f"database: ok ({database})")
        except Exception as exc:
            ok = False
            typer.echo(f"database: unreachable ({database}: {type(exc).__name__})")
        finally:
            await engine.dispose()
        if settings.redis_url:
            shown = _without_password(settings.redis_url)
            redis = Redis.from_url(settings.redis_url)
            try:
                await redis.ping()
                typer.echo(f"redis: ok ({shown})")
            except Exception as exc:
                ok = False
                typer.echo(f"redis: unreachable ({shown}: {type(exc).__name__})")
            finally:
                await redis.aclose()
        else:
            typer.echo("redis: not configured (in-process bus and stores)")
        return ok

    typer.echo("settings: ok")
    raise typer.Exit(0 if asyncio.run(go()) else 3)


def _without_password(url: str) -> str:
    """A database or Redis URL as it may be printed: any password (also ``?password=``) replaced by ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        hidden = {k: "***" for k in parsed.query if "password" in k.lower() or "secret" in k.lower()}
        return parsed.update_query_dict(hidden).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except ArgumentError:  # unparsable: the scheme alone says which kind
        return url.split("://", 1)[0] + "://…" if "://" in url else "an unparsable URL"


def main() -> None:
    app()
