"""Server WebSocket tests run against the app in-process under a real uvicorn (tests/kit/livekit.py)."""

from tests.kit.livekit import live, live_backends  # noqa: F401  (the fixtures, re-exported)
