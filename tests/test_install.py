"""Melo installs as users install it: a wheel built with `python -m build`, in a clean virtualenv; and
the README's CI step, install line included, runs there as written.

The build runs on a copy of the repository (its sources only), so this checkout is left untouched.
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.live import running_server

# Building, then installing every dependency into a new virtualenv, takes a minute or two on a quiet
# machine; the fixture's time counts against the first test, so give it room on a loaded one.
pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[1]
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "build", "dist",
    "*.egg-info", "snapshot_report.html",
)


@dataclass
class Installed:
    source: Path  # the copy of the repository the wheel was built from
    wheel: Path
    bin: Path  # the clean virtualenv's bin directory
    build_log: str

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=120,
                              env=env, check=False)


def _run(*cmd: str, cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("install")
    source = base / "melo"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES, symlinks=True)
    log = _run(sys.executable, "-m", "build", "--outdir", str(base / "dist"), str(source))
    (wheel,) = (base / "dist").glob("melo-*.whl")
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    _run(str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel))
    yield Installed(source, wheel, venv / "bin", log)


def test_the_build_is_clean(installed: Installed) -> None:
    # setuptools warned (three times) that a table-form project.license is deprecated: it is an SPDX string now
    assert "project.license" not in installed.build_log
    assert "SetuptoolsDeprecationWarning" not in installed.build_log
    assert installed.wheel.name == "melo-0.1.0-py3-none-any.whl"


def test_the_wheel_gives_working_commands(installed: Installed, tmp_path: Path) -> None:
    for command in ("melo", "melo-server", "melo-tui"):
        result = installed.run(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage" in result.stdout.lower()
    # the migrations travel in the wheel: a fresh data directory migrates from the installed package alone
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    env["MELO_DATA_DIR"] = str(tmp_path / "data")
    result = installed.run("melo-server", "migrate", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "melo.sqlite3").exists()


def readme_ci_commands() -> list[str]:
    """The shell lines of the README's GitHub Actions step (under "`melo smoke` in CI"), as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### `melo smoke` in CI", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "path: melo" in block  # the checkout step puts this repository in ./melo
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "run: |") + 1
    indent = len(lines[start]) - len(lines[start].lstrip())
    return [line[indent:] for line in lines[start:] if line.strip() and line.startswith(" " * indent)]


def test_readme_ci_snippet_runs_as_written(installed: Installed, tmp_path: Path) -> None:
    """The step's `run:` lines, each by bash, in a directory holding the checkout as ./melo, with the
    clean virtualenv first on PATH (what `setup-python` gives a runner) and the step's environment."""
    commands = readme_ci_commands()
    assert commands[0] == "pip install ./melo" and any(c.startswith("melo smoke") for c in commands), commands
    workdir = installed.source.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELO_")}
    env.update({"PATH": f"{installed.bin}:{env.get('PATH', '')}", "NO_COLOR": "1"})
    with running_server(tmp_path / "server") as server:
        env["MELO_SERVER"] = server.url  # ${{ vars.MELO_SERVER }}; MELO_ADMIN_TOKEN is optional: unset
        for line in commands:
            done = subprocess.run(["bash", "-ec", line], cwd=workdir, env=env, capture_output=True, text=True,
                                  timeout=600, check=False)
            assert done.returncode == 0, (line, done.stderr)
    doc = json.loads((workdir / "smoke.json").read_text())
    assert doc["ok"] is True and doc["server"] == server.url
    assert ElementTree.parse(workdir / "smoke.xml").getroot().get("failures") == "0"
