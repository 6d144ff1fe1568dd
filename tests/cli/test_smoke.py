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


def readme_ci_commands() -> list[str]:
    """The shell lines of the README's GitHub Actions step (under "`melo smoke` in CI"), as written."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### `melo smoke` in CI", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "run: |") + 1
    indent = len(lines[start]) - len(lines[start].lstrip())
    return [line[indent:] for line in lines[start:] if line.strip() and line.startswith(" " * indent)]


def test_readme_ci_snippet_runs_as_written(fresh_server: LiveServer, tmp_path: Path) -> None:
    """Each `melo` line of the README's CI step, run by bash with the step's environment. The
    `pip install` line is skipped on purpose: this checkout's melo is already on PATH (the venv's)."""
    commands = readme_ci_commands()
    assert any(line.startswith("pip install") for line in commands)  # the step installs melo first
    melo_lines = [line for line in commands if not line.startswith("pip install")]
    assert melo_lines and all(line.startswith("melo ") for line in melo_lines), commands
    env = Melo(tmp_path / "home", None).env()
    env["MELO_SERVER"] = fresh_server.url  # ${{ vars.MELO_SERVER }}; MELO_ADMIN_TOKEN is optional: unset
    env["PATH"] = f"{Path(melo_command()[0]).parent}:{env.get('PATH', '')}"
    for line in melo_lines:
        done = subprocess.run(["bash", "-ec", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, (line, done.stderr)
    doc = json.loads((tmp_path / "smoke.json").read_text())
    assert doc["ok"] is True and doc["server"] == fresh_server.url
    assert ET.parse(tmp_path / "smoke.xml").getroot().get("failures") == "0"
