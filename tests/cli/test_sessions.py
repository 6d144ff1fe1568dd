"""``melo sessions``: list, revoke ID, revoke-all with and without the current session."""

import json
from pathlib import Path

from tests.cli.conftest import Melo, new_username

SESSION_KEYS = {"id", "device_id", "device_name", "created_at", "last_seen_at", "ip", "user_agent", "current"}


def _two_devices(melo: Melo, tmp_path: Path) -> tuple[str, Melo, str, str]:
    name = new_username()
    first = json.loads(melo.register(name, "--json", "--device-name", "desk").stdout)["session_id"]
    other = Melo(home=tmp_path / "second-device", server=melo.server)
    login = other.login(name, "--json", "--device-name", "phone")
    assert login.returncode == 0, login.stderr
    return name, other, first, json.loads(login.stdout)["session_id"]


def test_sessions_list_json_and_human(melo: Melo, tmp_path: Path) -> None:
    _name, _other, first, second = _two_devices(melo, tmp_path)
    result = melo("sessions", "list", "--json")
    assert result.returncode == 0, result.stderr
    sessions = json.loads(result.stdout)["sessions"]
    assert {s["id"] for s in sessions} == {first, second}
    assert all(set(s) == SESSION_KEYS for s in sessions)
    assert [s["id"] for s in sessions if s["current"]] == [first]
    assert {s["device_name"] for s in sessions} == {"desk", "phone"}
    assert all(s["user_agent"].startswith("melo-cli/") for s in sessions)

    human = melo("sessions", "list")
    assert human.returncode == 0
    assert first in human.stdout and second in human.stdout  # full ids, to copy into `revoke`
    current_line = next(line for line in human.stdout.splitlines() if first in line)
    assert "*" in current_line and "desk" in current_line


def test_revoke_one_session(melo: Melo, tmp_path: Path) -> None:
    _name, other, _first, second = _two_devices(melo, tmp_path)
    result = melo("--json", "sessions", "revoke", second)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"revoked": 1, "session_id": second, "was_current": False}
    assert other("whoami").returncode == 4
    remaining = json.loads(melo("sessions", "list", "--json").stdout)["sessions"]
    assert second not in {s["id"] for s in remaining}


def test_revoke_unknown_session_exits_1(melo: Melo) -> None:
    melo.register(new_username())
    result = melo("--json", "sessions", "revoke", "0" * 32)
    assert result.returncode == 1
    assert json.loads(result.stderr)["error"]["code"] == "session_not_found"
    assert melo("whoami").returncode == 0


def test_revoke_current_session_logs_out(melo: Melo) -> None:
    first = json.loads(melo.register(new_username(), "--json").stdout)["session_id"]
    result = melo("sessions", "revoke", first)
    assert result.returncode == 0, result.stderr
    assert "logged out" in result.stdout
    assert melo("whoami").returncode == 4


def test_revoke_all_keeps_current_by_default(melo: Melo, tmp_path: Path) -> None:
    _name, other, first, _second = _two_devices(melo, tmp_path)
    result = melo("sessions", "revoke-all")
    assert result.returncode == 0, result.stderr
    assert "Revoked 1 other session" in result.stdout
    assert other("whoami").returncode == 4
    sessions = json.loads(melo("sessions", "list", "--json").stdout)["sessions"]
    assert [s["id"] for s in sessions] == [first]


def test_revoke_all_include_current(melo: Melo, tmp_path: Path) -> None:
    _name, other, _first, _second = _two_devices(melo, tmp_path)
    result = melo("--json", "sessions", "revoke-all", "--include-current")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"revoked": 2, "include_current": True}
    assert melo("whoami").returncode == 4
    assert other("whoami").returncode == 4
    assert not (melo.home / "credentials" / "default.json").exists()


def test_quiet_prints_no_confirmation(melo: Melo) -> None:
    melo.register(new_username())
    result = melo("-q", "sessions", "revoke-all")
    assert result.returncode == 0
    assert result.stdout == ""


def test_revoke_by_unique_prefix_and_ambiguous_lists_candidates(melo: Melo) -> None:
    import httpx

    from tests.cli.conftest import PASSWORD

    name = new_username("pfx")
    ids = [json.loads(melo.register(name, "--json").stdout)["session_id"]]
    while len({i[0] for i in ids}) == len(ids):  # more logins until two ids share a first character (≤ 17)
        r = httpx.post(f"{melo.server}/v1/auth/login", json={"username": name, "password": PASSWORD}, timeout=30)
        assert r.status_code == 200, r.text
        ids.append(r.json()["session_id"])
    first_char = next(c for c in {i[0] for i in ids} if sum(i[0] == c for i in ids) > 1)
    sharing = sorted(i for i in ids if i[0] == first_char)

    ambiguous = melo("--json", "sessions", "revoke", first_char)
    assert ambiguous.returncode == 1
    error = json.loads(ambiguous.stderr)["error"]
    assert error["code"] == "ambiguous_session" and error["details"]["candidates"] == sharing
    assert all(i in error["message"] for i in sharing)

    target = ids[-1]  # not the current session (ids[0])
    revoked = melo("sessions", "revoke", target[:12])
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == f"Revoked session {target}"  # the full id it matched
    remaining = {s["id"] for s in json.loads(melo("sessions", "list", "--json").stdout)["sessions"]}
    assert remaining == set(ids) - {target}

    unknown = melo("--json", "sessions", "revoke", "zz")
    assert unknown.returncode == 1 and json.loads(unknown.stderr)["error"]["code"] == "session_not_found"
