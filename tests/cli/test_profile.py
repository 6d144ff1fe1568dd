"""``melo profile show|set`` and ``melo avatar set|remove`` against a live server."""

import io
import json
from pathlib import Path

from tests.cli.conftest import Melo, new_username

PROFILE_KEYS = {"id", "username", "display_name", "bio", "has_avatar", "created_at"}


def _png(path: Path) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return path


def test_profile_set_and_show_own_and_others(melo: Melo, tmp_path: Path) -> None:
    name = new_username("prof")
    melo.register(name)
    updated = melo("profile", "set", "--display-name", "Ada L.", "--bio", "counts things", "--json")
    assert updated.returncode == 0, updated.stderr
    doc = json.loads(updated.stdout)
    assert set(doc) == PROFILE_KEYS
    assert (doc["username"], doc["display_name"], doc["bio"]) == (name, "Ada L.", "counts things")

    mine = json.loads(melo("profile", "show", "--json").stdout)
    assert mine == doc
    human = melo("profile", "show")
    assert human.returncode == 0
    assert "Ada L." in human.stdout and "counts things" in human.stdout

    other = Melo(home=tmp_path / "viewer", server=melo.server)
    other.register(new_username("viewer"))
    seen = other("--json", "profile", "show", f"@{name}")
    assert seen.returncode == 0, seen.stderr
    assert json.loads(seen.stdout)["display_name"] == "Ada L."

    missing = other("--json", "profile", "show", "nobody_" + name)
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["error"]["code"] == "user_not_found"


def test_profile_set_without_options_is_usage_error(melo: Melo) -> None:
    melo.register(new_username("prof"))
    result = melo("profile", "set")
    assert result.returncode == 2
    assert "--display-name" in result.stderr


def test_profile_commands_need_login(melo: Melo) -> None:
    assert melo("profile", "show").returncode == 4
    assert melo("profile", "set", "--bio", "x").returncode == 4


def test_avatar_set_and_remove(melo: Melo, tmp_path: Path) -> None:
    melo.register(new_username("ava"))
    result = melo("avatar", "set", str(_png(tmp_path / "me.png")), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["has_avatar"] is True
    assert json.loads(melo("profile", "show", "--json").stdout)["has_avatar"] is True

    removed = melo("avatar", "remove", "--json")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(melo("profile", "show", "--json").stdout)["has_avatar"] is False


def test_avatar_refuses_non_images_and_missing_files(melo: Melo, tmp_path: Path) -> None:
    melo.register(new_username("ava"))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    bad = melo("--json", "avatar", "set", str(text))
    assert bad.returncode == 1
    assert json.loads(bad.stderr)["error"]["code"] == "invalid_image"
    assert melo("avatar", "set", str(tmp_path / "absent.png")).returncode == 2
    assert json.loads(melo("profile", "show", "--json").stdout)["has_avatar"] is False
