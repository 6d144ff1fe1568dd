"""Uvicorn entry point for worker processes: settings from MELO_* (set by ``melo-server run``)."""

import os
from pathlib import Path

from fastapi import FastAPI

from server.app import create_app
from server.config import load_settings
from server.core.logging import configure_logging


def make_app() -> FastAPI:
    config = os.environ.get("MELO_CONFIG_FILE")
    settings = load_settings(Path(config) if config else None)
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
