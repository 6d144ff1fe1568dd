"""Emoji (SAS) verification in the TUI against an SDK peer on the live server: started from the palette
and confirmed on both sides; requested by the peer, accepted, and refused as a mismatch; started from
the safety-number screen with a device picker, and ended by the peer (the screen closes with a notice);
a request declined, and one cancelled with Escape (the peer sees both)."""

import asyncio
from pathlib import Path
from typing import Any

from textual.command import CommandList
from textual.pilot import Pilot

from melo_protocol.client import events as ev
from melo_protocol.client.messenger import Messenger
from melo_protocol.crypto import SasState
from melo_tui.app import MeloApp
from melo_tui.screens.chat import ChatScreen
from melo_tui.screens.pick_device import PickDeviceScreen
from melo_tui.screens.sas import SasScreen
from melo_tui.screens.sas_request import SasRequestScreen
from melo_tui.screens.verify import VerifyScreen
from tests.kit.e2ekit import close_all, device, next_of
from tests.kit.livekit import Live
from tests.tui.tuikit import SIZE, login, make_app, prompt_ready, type_text, unique, wait_for


def _update(txn: str, state: str) -> Any:
    return lambda e: e.data.get("transaction_id") == txn and e.state == state


def _plain(screen: SasScreen, selector: str) -> str:
    rendered = screen.query_one(selector).render()
    return str(getattr(rendered, "plain", rendered))


def _highlighted_command(app: MeloApp) -> str:
    lists = app.screen.query(CommandList)
    if not lists or lists.first().highlighted is None:
        return ""
    option = lists.first().get_option_at_index(lists.first().highlighted)  # type: ignore[arg-type]
    return str(getattr(option.prompt, "plain", option.prompt))


async def _trust(m: Messenger, username: str) -> list[str]:
    return [d["trust"] for d in await m.devices(username) if not d["current"]]


async def _sas_screen(pilot: Pilot[None]) -> SasScreen:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, SasScreen), what="the SAS screen")
    screen = app.screen
    assert isinstance(screen, SasScreen)
    return screen


async def _logged_in_with_dm(pilot: Pilot[None], alice: str, bob: Messenger) -> ChatScreen:
    await login(pilot, alice, register=True)
    screen = pilot.app.screen
    assert isinstance(screen, ChatScreen)
    await wait_for(pilot, lambda: screen.status == f"{alice} · connected", what="connected")
    await bob.client.create_direct(alice)  # contacts share a chat before they look up each other's keys
    return screen


async def test_start_from_palette_both_confirm_and_both_are_verified(live: Live, tmp_path: Path) -> None:
    alice, bob_name = unique("alice"), unique("bob")
    app = make_app(tmp_path / "alice-home", live.server.url)
    bob = await device(live, tmp_path / "bob-home", bob_name, "bob", register=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await _logged_in_with_dm(pilot, alice, bob)
            await pilot.press("ctrl+p")
            await type_text(pilot, "verify by emoji")
            await wait_for(pilot, lambda: _highlighted_command(app).startswith("Verify by emoji (SAS)"),
                           what="the palette action")
            await pilot.press("enter")
            await wait_for(pilot, lambda: prompt_ready(app), what="the username prompt")
            await type_text(pilot, bob_name)
            await pilot.press("enter")

            sas_screen = await _sas_screen(pilot)  # bob has one device: no picker
            assert sas_screen.username == bob_name and sas_screen.device_id == bob.device_id
            assert "Waiting for" in _plain(sas_screen, "#sas-status")
            request = await next_of(bob, ev.VerificationUpdate, lambda e: e.state == "created")
            txn = request.data["transaction_id"]
            assert txn == sas_screen.transaction_id and request.user == alice
            bob_sas = await bob.accept_sas(txn)
            bob_keys = asyncio.create_task(next_of(bob, ev.VerificationUpdate, _update(txn, "keys_exchanged")))
            await wait_for(pilot, lambda: sas_screen.can_decide, what="the emoji shown")
            await bob_keys
            assert sas_screen.emoji == bob_sas.emoji() and len(sas_screen.emoji) == 7
            assert sas_screen.decimals == bob_sas.decimals()
            shown = _plain(sas_screen, "#sas-emoji")
            assert all(symbol in shown and name in shown for symbol, name in bob_sas.emoji())
            assert _plain(sas_screen, "#sas-decimals").split() == [str(d) for d in bob_sas.decimals()]

            assert (await bob.confirm_sas(txn, match=True)).state is SasState.CONFIRMED  # bob first, then alice
            bob_verified = asyncio.create_task(next_of(bob, ev.VerificationUpdate, _update(txn, "verified")))
            await wait_for(pilot, lambda: sas_screen.query_one("#sas-match").region.area > 0, what="the buttons shown")
            await pilot.click("#sas-match")
            await wait_for(pilot, lambda: sas_screen.state == "verified", what="verified in the TUI")
            await bob_verified
            assert bob_sas.state is SasState.VERIFIED
            assert "Verified" in _plain(sas_screen, "#sas-status")
            assert not sas_screen.query_one("#sas-buttons").display
            messenger = app.backend.messenger
            assert messenger is not None
            assert await _trust(messenger, bob_name) == ["verified"]
            assert await _trust(bob, alice) == ["verified"]
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, SasScreen), what="the screen closed")
            assert app.sas.screens == {}
    finally:
        await app.backend.close()
        await close_all(bob)


async def test_peer_request_accepted_then_mismatch_verifies_nobody(live: Live, tmp_path: Path) -> None:
    alice, bob_name = unique("alice"), unique("bob")
    app = make_app(tmp_path / "alice-home", live.server.url)
    bob = await device(live, tmp_path / "bob-home", bob_name, "bob", register=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await _logged_in_with_dm(pilot, alice, bob)
            messenger = app.backend.messenger
            assert messenger is not None
            bob_sas = await bob.start_sas(alice, messenger.device_id)  # alice's TUI never looked bob up
            txn = bob_sas.transaction_id
            await wait_for(pilot, lambda: isinstance(app.screen, SasRequestScreen), what="the request modal")
            request = app.screen
            assert isinstance(request, SasRequestScreen)
            assert (request.username, request.device_id, request.transaction_id) == (bob_name, bob.device_id, txn)
            who = request.query_one("#sas-request-who").render()
            assert str(getattr(who, "plain", who)) == f"{bob_name} wants to verify"

            bob_keys = asyncio.create_task(next_of(bob, ev.VerificationUpdate, _update(txn, "keys_exchanged")))
            await pilot.press("a")
            sas_screen = await _sas_screen(pilot)
            assert sas_screen.transaction_id == txn
            await wait_for(pilot, lambda: sas_screen.can_decide, what="the emoji shown")
            await bob_keys
            assert sas_screen.emoji == bob_sas.emoji() and sas_screen.decimals == bob_sas.decimals()

            bob_cancelled = asyncio.create_task(next_of(bob, ev.VerificationUpdate, _update(txn, "cancelled")))
            await pilot.press("n")
            await wait_for(pilot, lambda: sas_screen.state == "cancelled", what="the mismatch in the TUI")
            await bob_cancelled
            assert bob_sas.state is SasState.CANCELLED and bob_sas.cancel_code == "m.mismatched_sas"
            assert sas_screen.cancel_code == "m.mismatched_sas"
            assert "don't match" in _plain(sas_screen, "#sas-status")
            assert app.screen is sas_screen  # the user's own "no" stays on screen with its outcome
            assert await _trust(messenger, bob_name) == ["unverified"]
            assert await _trust(bob, alice) == ["unverified"]
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, SasScreen), what="the screen closed")
    finally:
        await app.backend.close()
        await close_all(bob)


async def test_from_safety_number_pick_a_device_and_the_peer_cancels(live: Live, tmp_path: Path) -> None:
    alice, bob_name = unique("alice"), unique("bob")
    app = make_app(tmp_path / "alice-home", live.server.url)
    bob = await device(live, tmp_path / "bob-home", bob_name, "bob", register=True)
    phone = await device(live, tmp_path / "phone-home", bob_name, "phone")
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await _logged_in_with_dm(pilot, alice, bob)
            app.verify(bob_name)
            await wait_for(pilot, lambda: isinstance(app.screen, VerifyScreen), what="the safety number")
            await wait_for(pilot, lambda: any(b.region.area for b in app.screen.query("#compare-emoji")),
                           what="the button laid out")
            await pilot.click("#compare-emoji")
            await wait_for(pilot, lambda: isinstance(app.screen, PickDeviceScreen), what="the device picker")
            picker = app.screen
            assert isinstance(picker, PickDeviceScreen)
            assert sorted(d["device_id"] for d in picker.devices) == sorted([bob.device_id, phone.device_id])
            options = picker.query_one("#pick-device-list")
            options.highlighted = [d["device_id"] for d in picker.devices].index(phone.device_id)  # type: ignore[attr-defined]
            await pilot.press("enter")

            sas_screen = await _sas_screen(pilot)
            assert sas_screen.device_id == phone.device_id
            request = await next_of(phone, ev.VerificationUpdate, lambda e: e.state == "created")
            assert request.data["transaction_id"] == sas_screen.transaction_id
            await phone.cancel_sas(sas_screen.transaction_id)
            await wait_for(pilot, lambda: app.screen is screen, what="the SAS screen closed by the peer")
            await wait_for(pilot, lambda: any(f"{bob_name} cancelled the verification" in str(n.message)
                                              for n in app._notifications), what="the notice")
            assert app.sas.screens == {}
            messenger = app.backend.messenger
            assert messenger is not None
            assert await _trust(messenger, bob_name) == ["unverified", "unverified"]
    finally:
        await app.backend.close()
        await close_all(bob, phone)


async def test_decline_a_request_and_cancel_with_escape(live: Live, tmp_path: Path) -> None:
    alice, bob_name = unique("alice"), unique("bob")
    app = make_app(tmp_path / "alice-home", live.server.url)
    bob = await device(live, tmp_path / "bob-home", bob_name, "bob", register=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await _logged_in_with_dm(pilot, alice, bob)
            messenger = app.backend.messenger
            assert messenger is not None
            bob_sas = await bob.start_sas(alice, messenger.device_id)
            await wait_for(pilot, lambda: isinstance(app.screen, SasRequestScreen), what="the request modal")
            bob_cancelled = asyncio.create_task(
                next_of(bob, ev.VerificationUpdate, _update(bob_sas.transaction_id, "cancelled")))
            await pilot.press("d")
            await bob_cancelled
            assert bob_sas.cancel_code == "m.user" and app.screen is screen

            app.sas.start(bob_name)
            sas_screen = await _sas_screen(pilot)
            txn = sas_screen.transaction_id
            await next_of(bob, ev.VerificationUpdate, _update(txn, "created"))
            bob_cancelled = asyncio.create_task(next_of(bob, ev.VerificationUpdate, _update(txn, "cancelled")))
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen, what="the SAS screen closed")
            await bob_cancelled
            assert not any("cancelled the verification" in str(n.message) for n in app._notifications)
            assert await _trust(bob, alice) == ["unverified"]
    finally:
        await app.backend.close()
        await close_all(bob)
