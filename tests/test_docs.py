"""docs/protocol.md must list every route the server serves (and, later, every WebSocket frame)."""

import re
from pathlib import Path

from server.app import create_app
from server.config import Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def documented_routes() -> set[tuple[str, str]]:
    found = set()
    for method, path in re.findall(r"^\|\s*([A-Z]+)\s*\|\s*`([^`?]+)", DOC.read_text(), flags=re.M):
        found.add((method, path))
    return found


def test_every_rest_route_is_documented(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    served = {
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        for method in ops
    }
    missing = sorted(served - documented_routes())
    assert not missing, f"routes missing from docs/protocol.md: {missing}"
    stale = sorted(documented_routes() - served - {("GET", "/openapi.json"), ("GET", "/docs")})
    assert not stale, f"docs/protocol.md lists routes the server does not serve: {stale}"
