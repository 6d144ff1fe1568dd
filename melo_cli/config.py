"""melo's own settings in ``<home>/config.json``: for now, the profile ``melo profiles use`` selected.

Which profile a command uses: ``--profile``, else MELO_PROFILE, else the selected one, else "default".
"""

import contextlib
import json
import os
from pathlib import Path

CONFIG_NAME = "config.json"


def config_path(home: Path) -> Path:
    return home / CONFIG_NAME


def load_config(home: Path) -> dict[str, object]:
    try:
        doc = json.loads(config_path(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def selected_profile(home: Path) -> str | None:
    value = load_config(home).get("profile")
    return value if isinstance(value, str) and value else None


def select_profile(home: Path, profile: str) -> None:
    doc = load_config(home)
    doc["profile"] = profile
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = config_path(home).with_name(f".{CONFIG_NAME}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, config_path(home))
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
