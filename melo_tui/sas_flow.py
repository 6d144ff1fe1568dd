"""Interactive SAS verification for the app: starts one (picking the contact's device), answers a
contact's request, calls the SDK in workers and keeps the open ``SasScreen`` in step with the
``VerificationUpdate`` events of the live stream.

A verification the other side ends (cancel, mismatch, failed key check) closes its screen with a
notice; one the user ends here stays on screen with its outcome until Escape.
"""

from typing import TYPE_CHECKING, Any

from melo_protocol.client import events as ev
from melo_protocol.client.errors import MeloError
from melo_protocol.crypto import SasState, SasVerification
from melo_tui.sanitize import clean_line
from melo_tui.screens.pick_device import PickDeviceScreen
from melo_tui.screens.sas import SasScreen
from melo_tui.screens.sas_request import SasRequestScreen

if TYPE_CHECKING:
    from melo_tui.app import MeloApp

CODES_SHOWN = (SasState.KEYS_EXCHANGED, SasState.CONFIRMED, SasState.VERIFIED)
PEER_ENDED = {
    "m.user": "{peer} cancelled the verification.",
    "m.mismatched_sas": "{peer} says the emoji don't match: not verified.",
}


class SasFlow:
    def __init__(self, app: "MeloApp") -> None:
        self.app = app
        self.screens: dict[str, SasScreen] = {}  # transaction id → its open screen
        self.requests: dict[str, SasRequestScreen] = {}  # transaction id → its accept/decline modal
        self.verifications: dict[str, SasVerification] = {}
        self.ended_here: set[str] = set()  # the user said "no match" or cancelled: no notice for that

    def _messenger(self) -> Any:
        messenger = self.app.backend.messenger
        assert messenger is not None
        return messenger

    # -- starting ---------------------------------------------------------------------------------------------
    def start(self, username: str) -> None:
        self.app.run_worker(self._start(username), group="sas")

    async def _start(self, username: str) -> None:
        who = clean_line(username, 64)
        if not username:
            self.app.notify("Whom to verify? Give a username.", severity="warning")
            return
        messenger = self._messenger()
        try:
            devices = [d for d in await messenger.devices(username) if not d["current"]]
        except MeloError as exc:
            self.app.notify(f"Cannot verify {who}: {exc}", severity="error")
            return
        if not devices:
            self.app.notify(f"{who} has no other device to verify.", severity="warning")
            return
        device_id = devices[0]["device_id"]
        if len(devices) > 1:
            device_id = await self.app.push_screen_wait(PickDeviceScreen(username, devices))
            if device_id is None:
                return
        try:
            sas = await messenger.start_sas(username, device_id)
        except MeloError as exc:  # an E2EError when the verification itself fails
            self.app.notify(f"Cannot verify {who}: {exc}", severity="error")
            return
        self._open(username, sas)

    def _open(self, username: str, sas: SasVerification) -> None:
        txn = sas.transaction_id
        self.verifications[txn] = sas
        screen = SasScreen(username, sas.their[1], txn, lambda match: self._decided(txn, match),
                           state=sas.state.value)
        self.screens[txn] = screen
        self._show(screen, sas)
        self.app.push_screen(screen, lambda _: self._closed(txn))

    def _closed(self, txn: str) -> None:
        self.screens.pop(txn, None)
        self.verifications.pop(txn, None)
        self.ended_here.discard(txn)

    # -- a contact's request ------------------------------------------------------------------------------------
    def _requested(self, event: ev.VerificationUpdate, txn: str) -> None:
        modal = SasRequestScreen(event.user, event.device_id, txn)
        self.requests[txn] = modal

        def answered(accept: bool | None) -> None:
            self.requests.pop(txn, None)
            if accept is not None:
                self.app.run_worker(self._answer(event.user, txn, accept), group="sas")
        self.app.push_screen(modal, answered)

    async def _answer(self, username: str, txn: str, accept: bool) -> None:
        messenger = self._messenger()
        try:
            if not accept:
                await messenger.cancel_sas(txn)
                return
            sas = await messenger.accept_sas(txn)
        except (MeloError, KeyError) as exc:
            self.app.notify(f"Verification with {clean_line(username, 64)} failed: {exc}", severity="error")
            return
        self._open(username, sas)

    # -- the user's decision ----------------------------------------------------------------------------------
    def _decided(self, txn: str, match: bool | None) -> None:
        self.app.run_worker(self._decide(txn, match), group="sas")

    async def _decide(self, txn: str, match: bool | None) -> None:
        messenger = self._messenger()
        sas = self.verifications.get(txn)
        if match is not True and txn in self.screens:
            self.ended_here.add(txn)
        try:
            if match is None:
                await messenger.cancel_sas(txn)
            else:
                sas = await messenger.confirm_sas(txn, match=match)
        except MeloError as exc:  # an E2EError when the verification itself fails
            self.app.notify(f"Verification failed: {exc}", severity="error")
        screen = self.screens.get(txn)
        if screen is not None and sas is not None:
            self._show(screen, sas)

    # -- events from the live stream ------------------------------------------------------------------------------
    def handle(self, event: ev.VerificationUpdate) -> None:
        txn = str(event.data.get("transaction_id", ""))
        screen, sas = self.screens.get(txn), self.verifications.get(txn)
        if screen is not None and sas is not None:
            if sas.state is SasState.CANCELLED and txn not in self.ended_here and not screen.ended:
                self._peer_ended(screen, sas)
            else:
                self._show(screen, sas)
            return
        modal = self.requests.get(txn)
        if modal is not None:
            if event.state == SasState.CANCELLED.value:
                self.requests.pop(txn, None)
                self.app.notify(PEER_ENDED["m.user"].format(peer=clean_line(event.user, 64)), severity="warning")
                if modal.is_active:
                    modal.dismiss(None)
            return
        if event.state == SasState.CREATED.value and txn:
            self._requested(event, txn)
        else:
            self.app.notify(f"Verification with {clean_line(event.user, 64)}: {clean_line(event.state, 40)}")

    def _peer_ended(self, screen: SasScreen, sas: SasVerification) -> None:
        peer = clean_line(screen.username, 64)
        code = sas.cancel_code or ""
        notice = PEER_ENDED.get(code, "Verification with {peer} failed ({code}): not verified.")
        self.app.notify(notice.format(peer=peer, code=clean_line(code, 40)), severity="warning", timeout=8)
        screen.show(sas.state.value, cancel_code=sas.cancel_code)
        if screen.is_active:
            screen.dismiss(None)
        else:
            self._closed(sas.transaction_id)

    @staticmethod
    def _show(screen: SasScreen, sas: SasVerification) -> None:
        if sas.state in CODES_SHOWN and not screen.emoji:
            screen.show(sas.state.value, cancel_code=sas.cancel_code, emoji=sas.emoji(), decimals=sas.decimals())
        else:
            screen.show(sas.state.value, cancel_code=sas.cancel_code)
