"""``melo devices list`` and ``melo verify`` (safety number, --yes, and SAS between two processes)."""

import json
import subprocess
import sys

import pytest

from tests.cli.conftest import Melo, new_username
from tests.live import LiveServer


@pytest.fixture(scope="module")
def pair(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Melo, str, Melo]:
    home = tmp_path_factory.mktemp("verify")
    a, b = new_username("vfa"), new_username("vfb")
    ma, mb = Melo(home / a, live_server.url), Melo(home / b, live_server.url)
    ma.register(a)
    mb.register(b)
    assert ma("send", f"@{b}", "hi").returncode == 0  # a shared chat: keys are visible to each other
    return a, ma, b, mb


def test_devices_list_human_and_json(pair: tuple[str, Melo, str, Melo]) -> None:
    _, ma, b, _ = pair
    mine = json.loads(ma("--json", "devices", "list").stdout)
    rows = mine if isinstance(mine, list) else mine.get("devices", [])
    assert len(rows) == 1 and rows[0]["current"] is True and rows[0]["ed25519"]
    theirs = ma("--json", "devices", "list", b)
    assert theirs.returncode == 0, theirs.stderr
    rows = json.loads(theirs.stdout)
    rows = rows if isinstance(rows, list) else rows.get("devices", [])
    assert [r["trust"] for r in rows] == ["unverified"]
    human = ma("devices", "list", b)
    assert human.returncode == 0 and rows[0]["device_id"] in human.stdout


def test_verify_by_safety_number(pair: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = pair
    shown = ma("verify", b)  # no terminal, no --yes: shows the number, marks nothing
    assert shown.returncode == 0, shown.stderr
    digits = [g for g in shown.stdout.split() if len(g) == 5 and g.isdigit()]
    assert len(digits) >= 12
    other = mb("verify", a)
    assert [g for g in other.stdout.split() if len(g) == 5 and g.isdigit()][:12] == digits[:12]
    marked = ma("verify", b, "--yes")
    assert marked.returncode == 0, marked.stderr
    rows = json.loads(ma("--json", "devices", "list", b).stdout)
    rows = rows if isinstance(rows, list) else rows.get("devices", [])
    assert [r["trust"] for r in rows] == ["verified"]


def test_sas_between_two_processes(pair: tuple[str, Melo, str, Melo]) -> None:
    a, ma, b, mb = pair
    procs = [subprocess.Popen([sys.executable, "-m", "melo_cli", "--server", m.server, "--home", str(m.home),
                               "verify", other, "--sas", "--yes", "--timeout", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=m.env())
             for m, other in ((ma, b), (mb, a))]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, (out, err)
    # both sides showed the same three decimal groups (the emoji line is shown too)
    numbers = [[tok for tok in out.split() if tok.isdigit() and len(tok) == 4] for out, _ in outs]
    assert len(numbers[0]) >= 3 and numbers[0][:3] == numbers[1][:3]
    rows = json.loads(mb("--json", "devices", "list", a).stdout)
    rows = rows if isinstance(rows, list) else rows.get("devices", [])
    assert [r["trust"] for r in rows] == ["verified"]
