"""A device that lacks a message's key asks for it, and the ask really leaves before `melo` exits.

`melo history` on a second device of carol's shows bob's older message as waiting for its key and sends
bob's devices a key request. Before, the request was a task that outlived the client: it died with
"Task exception was never retrieved … the client has been closed" on stderr, and nobody was asked.
(Whether bob's device should answer a device that did not exist when he sent is issue 14's business;
here only the request's delivery and a clean exit are checked.)
"""

import asyncio
import json
from pathlib import Path

from melo_protocol.client import CredentialStore, MeloClient
from melo_protocol.wire.keys import ToDeviceOut
from tests.cli.conftest import Melo, new_username
from tests.live import LiveServer


async def queued_for(server: LiveServer, home: Path) -> list[ToDeviceOut]:
    """The to-device messages waiting on the server for the device of a CLI home (not taken off it)."""
    async with MeloClient(server.url, store=CredentialStore(home, "default")) as client:
        return await client.list_to_device()


def test_a_missing_key_is_asked_for_before_melo_exits_without_a_traceback(
    live_server: LiveServer, tmp_path: Path
) -> None:
    bob, carol = new_username("bob"), new_username("carol")
    as_bob = Melo(tmp_path / "bob", live_server.url)
    laptop = Melo(tmp_path / "carol-laptop", live_server.url)
    desktop = Melo(tmp_path / "carol-desktop", live_server.url)
    as_bob.register(bob)
    laptop.register(carol)
    sent = as_bob("send", f"@{carol}", "sent before the desktop existed")
    assert sent.returncode == 0, sent.stderr
    assert desktop.login(carol).returncode == 0
    desktop_id = json.loads(desktop("whoami", "--json").stdout)["device_id"]
    assert not [m for m in asyncio.run(queued_for(live_server, as_bob.home)) if m.sender_device == desktop_id]

    waiting = desktop("history", f"@{bob}")

    assert waiting.returncode == 0, waiting.stderr
    assert "waiting for the key" in waiting.stdout
    assert "Traceback" not in waiting.stderr and "never retrieved" not in waiting.stderr, waiting.stderr
    asks = [m for m in asyncio.run(queued_for(live_server, as_bob.home)) if m.sender_device == desktop_id]
    assert len(asks) == 1 and asks[0].sender == carol  # one Olm-encrypted request, from the desktop
