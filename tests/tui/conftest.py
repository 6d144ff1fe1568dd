"""TUI tests: the in-process live server (``live``) for Pilot tests, a ``melo-server`` process for
snapshot and real-terminal tests."""

from tests.kit.livekit import live  # noqa: F401  (the fixture, re-exported)
from tests.live import live_server_fixture

tui_server = live_server_fixture(scope="session", name="tui-live")
