"""Settings from the environment, as `melo-server run` hands them to its workers."""

import pytest

from server.config import load_settings


def test_list_settings_come_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MELO_ICE_STUN_URLS", '["stun:stun.example.org:3478"]')
    monkeypatch.setenv("MELO_ICE_TURN_URLS", "[]")
    monkeypatch.setenv("MELO_PORT", "9001")
    settings = load_settings()
    assert settings.ice_stun_urls == ["stun:stun.example.org:3478"]
    assert settings.ice_turn_urls == []
    assert settings.port == 9001
