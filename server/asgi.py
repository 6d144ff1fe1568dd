"""Uvicorn entry point for worker processes (settings from MELO_*, set by ``melo-server run``), and the
options every uvicorn serving Melo is started with."""

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from melo_protocol.wire.realtime import MAX_FRAME_BYTES
from server.app import create_app
from server.config import Settings, load_settings
from server.core.logging import configure_logging


def make_app() -> FastAPI:
    config = os.environ.get("MELO_CONFIG_FILE")
    settings = load_settings(Path(config) if config else None)
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config``: ``melo-server run`` and the tests' servers."""
    return {
        "log_config": None,  # configure_logging() set up uvicorn's loggers: JSON lines like ours
        "access_log": False,  # melo.access logs the route template, never the raw request line
        "proxy_headers": settings.trust_forwarded_for,
        "ws": "websockets-sansio" if _has_sansio() else "auto",
        # The protocol's frame limit, enforced by the transport: a bigger frame is refused from its header
        # with close code 1009, never read into memory (uvicorn's default would take 16 MiB, auth frame or not).
        "ws_max_size": MAX_FRAME_BYTES,
    }


def _has_sansio() -> bool:
    try:
        import uvicorn.protocols.websockets.websockets_sansio_impl  # noqa: F401
    except ImportError:
        return False
    return True
