"""Alembic, driven from code: ``melo-server migrate`` and the start-up of ``melo-server run``."""

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from server.db.engine import async_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' would be read as interpolation by configparser
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Run the (sync-driven) Alembic upgrade off the event loop."""
    await asyncio.to_thread(upgrade, url, revision)
