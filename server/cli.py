"""``melo-server``: run, migrate, create-admin, keys rotate, check (commands for the server host)."""

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

# Never print a traceback's local variables: create-admin holds a password in one.
app = typer.Typer(help="Melo server commands (run on the server host).", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_show_locals=False)
keys_app = typer.Typer(help="Signing and data keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file", exists=True,
                                                dir_okay=False, envvar="MELO_CONFIG_FILE")]


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

    settings = _settings(config, host=host, port=port, workers=workers,
                         migrate_on_start=False if no_migrate else None)
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
        "melo-server listening on http://%s:%s (data: %s, database: %s, bus: %s)", settings.host, settings.port,
        settings.data_dir, settings.effective_database_url.split("://")[0],
        "redis" if settings.redis_url else "in-process")
    uvicorn.run("server.asgi:make_app", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, **uvicorn_options(settings))


@app.command()
def migrate(config: ConfigOpt = None) -> None:
    """Apply database migrations."""
    from server.db.migrate import upgrade

    settings = _settings(config)
    upgrade(settings.effective_database_url)
    typer.echo("database is up to date", err=True)


@app.command("create-admin")
def create_admin(
    username: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
    config: ConfigOpt = None,
) -> None:
    """Create (or promote) an admin account. The password comes from stdin or a prompt, never argv."""
    from sqlalchemy.exc import SQLAlchemyError

    from server.core.errors import ApiError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _settings(config)

    async def go() -> None:
        from server.accounts.service import create_user
        from server.app import close_state, open_state
        from server.db.migrate import upgrade_async

        await upgrade_async(settings.effective_database_url)
        state = await open_state(settings)
        try:
            async with state.sessions() as db:
                user = await create_user(state, db, username, password, admin=True)
                typer.echo(f"admin {user.username} ready (id {user.id})", err=True)
        finally:
            await close_state(state)

    try:
        asyncio.run(go())
    except ApiError as exc:
        typer.echo(f"melo-server: {exc.message}", err=True)
        raise typer.Exit(1) from None
    except (OSError, SQLAlchemyError) as exc:
        typer.echo(f"melo-server: cannot reach the database ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None


@keys_app.command("rotate")
def keys_rotate(
    config: ConfigOpt = None,
    jwt: Annotated[bool, typer.Option("--jwt/--no-jwt", help="rotate the JWT signing key")] = True,
    data: Annotated[bool, typer.Option("--data", help="rotate the at-rest data key and re-encrypt")] = False,
) -> None:
    """New JWT signing key, published at once and used by every worker from MELO_JWT_KEY_PROPAGATION_S
    later (old tokens verify until they expire); with --data also a new at-rest data key: every sealed
    row is re-encrypted, then the old key is retired."""
    settings = _settings(config)

    async def go() -> None:
        from server.app import close_state, open_state

        state = await open_state(settings)
        data_row = None
        try:
            if jwt:
                row = await state.keys.rotate()
                assert row.activates_at is not None
                typer.echo(f"new JWT signing key {row.kid} is published; servers sign with it from "
                           f"{row.activates_at:%Y-%m-%d %H:%M:%S} UTC", err=True)
            if data:
                data_row = await state.data_keys.rotate()
            if jwt or data:
                await state.announce_key_rotation()  # running workers reload their rings at once (Redis)
            if data_row is not None:
                moved = await state.data_keys.reencrypt()
                typer.echo(f"new data key {data_row.kid} is active; {moved} rows re-encrypted", err=True)
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
        engine = create_engine(settings.effective_database_url)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            typer.echo("database: ok")
        except Exception as exc:
            ok = False
            typer.echo(f"database: unreachable ({type(exc).__name__})")
        finally:
            await engine.dispose()
        if settings.redis_url:
            redis = Redis.from_url(settings.redis_url)
            try:
                await redis.ping()
                typer.echo("redis: ok")
            except Exception as exc:
                ok = False
                typer.echo(f"redis: unreachable ({type(exc).__name__})")
            finally:
                await redis.aclose()
        return ok

    typer.echo("settings: ok")
    raise typer.Exit(0 if asyncio.run(go()) else 3)


def main() -> None:
    app()
