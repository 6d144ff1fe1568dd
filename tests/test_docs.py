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


def test_every_websocket_frame_is_documented() -> None:
    from typing import get_args

    from melo_protocol.wire import realtime

    text = DOC.read_text()
    ops = [m.model_fields["op"].annotation for m in get_args(get_args(realtime.ClientCommand)[0])]
    frames = get_args(get_args(realtime.ServerFrame)[0])
    server_types = [str(t) for m in frames for t in get_args(m.model_fields["type"].annotation)]
    event_types = [e.value for e in realtime.EventType]
    names = [get_args(op)[0] for op in ops] + server_types + event_types
    assert len(names) > 20
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"WebSocket frames missing from docs/protocol.md: {missing}"
    codes = [str(int(c)) for c in realtime.CloseCode]
    assert not [c for c in codes if f"| {c} |" not in text], "close codes missing from docs/protocol.md"


def test_every_chat_out_field_is_documented(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    fields = app.openapi()["components"]["schemas"]["ChatOut"]["properties"]
    assert "message_ttl_seconds" in fields
    text = DOC.read_text()
    missing = [f for f in fields if f"`{f}`" not in text]
    assert not missing, f"ChatOut fields missing from docs/protocol.md: {missing}"


ROOT = Path(__file__).resolve().parents[1]
PRODUCT_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_doc_links_stay_inside_the_repository() -> None:
    """The product's docs stand alone: every relative link names a file of this repository."""
    for doc in PRODUCT_DOCS:
        text = doc.read_text()
        assert "../shared" not in text, f"{doc.name} points outside the repository"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(ROOT), f"{doc.name} links {target}, outside the repository"
            assert path.exists(), f"{doc.name} links {target}, which does not exist"


def test_architecture_doc_covers_the_design() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    for heading in ("## Layers", "## Runtime", "## The send path", "## End-to-end encryption", "## Tests, in layers"):
        assert heading in text
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()


def test_the_invalid_frame_threshold_is_documented() -> None:
    fields = Settings.model_fields
    limit, window = fields["ws_max_bad_frames"].default, fields["ws_bad_frames_window_s"].default
    assert f"| 4009 | more than {limit} invalid frames within {window:g} s" in DOC.read_text()


def test_token_claims_name_the_servers_issuer_and_audience() -> None:
    text = DOC.read_text()
    issuer, audience = (Settings.model_fields[f].default for f in ("jwt_issuer", "jwt_audience"))
    assert f"`iss` = `{issuer}`" in text and f"`aud` = `{audience}`" in text
