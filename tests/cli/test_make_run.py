"""``melo-server run`` with zero configuration: it starts, answers /healthz and makes its files."""

from pathlib import Path

import httpx

from tests.live import running_server


def test_zero_config_server_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running_server(data_dir, minimal=True) as server:
        r = httpx.get(server.url + "/healthz", timeout=5)
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}
        assert (data_dir / "melo.sqlite3").is_file()
        assert (data_dir / "secret.key").is_file()
    assert server.process.returncode is not None  # stopped at the end of the block
