"""``melo smoke`` against its own fresh server: passes, writes JUnit, and fails with exit 6 when the server stops."""

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Melo, melo_command
from tests.live import LiveServer, running_server, start_server, stop_server


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with running_server(tmp_path_factory.mktemp("smoke")) as server:
        yield server


def test_smoke_json_and_junit_pass(fresh_server: LiveServer, tmp_path: Path) -> None:
    melo = Melo(tmp_path / "home", fresh_server.url)
    junit = tmp_path / "smoke.xml"
    result = melo("smoke", "--json", "--junit", str(junit))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["failed_step"] is None
    assert [s["status"] for s in doc["steps"]] == ["passed"] * len(doc["steps"])
    assert {"dm_a_to_b", "read_receipt", "edit", "reaction", "history", "revoke_closes_stream"} <= {
        s["name"] for s in doc["steps"]}
    assert doc["remaining_users"] == doc["users"] and len(doc["users"]) == 2  # no admin token: they remain
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) == len(doc["steps"])
    assert not (tmp_path / "home").exists()  # never touched the user's melo home

    human = melo("smoke")
    assert human.returncode == 0 and "revoke_closes_stream" in human.stdout and "passed" in human.stdout


def test_smoke_fails_with_6_naming_the_step_when_the_server_stops(tmp_path: Path) -> None:
    server = start_server(tmp_path / "doomed")
    try:
        melo = Melo(tmp_path / "home", server.url)
        proc = subprocess.Popen([*melo_command(), "smoke", "--json", "--step-timeout", "5",
                                 "--pause-after", "open_streams"], env=melo.env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None and proc.stdin is not None
        for line in proc.stderr:
            if json.loads(line) == {"step": "open_streams", "status": "paused", "detail": "press Enter to continue"}:
                break
        stop_server(server)
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        stop_server(server)
    assert proc.returncode == 6
    doc = json.loads(out)
    assert doc["ok"] is False and doc["failed_step"] == "dm_a_to_b"
    statuses = {s["name"]: s["status"] for s in doc["steps"]}
    assert statuses["open_streams"] == "passed" and statuses["dm_a_to_b"] == "failed"
    assert statuses["history"] == "not_run"
    assert "dm_a_to_b" in json.loads(err.strip().splitlines()[-1])["error"]["message"]
