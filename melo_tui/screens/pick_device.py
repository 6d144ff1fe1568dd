"""Pick one of a contact's devices (to verify by emoji): Enter picks, Escape cancels. Returns the device id."""

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from melo_tui.sanitize import clean_line


class PickDeviceScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [("escape", "cancel", "Cancel")]

    def __init__(self, username: str, devices: list[dict[str, Any]]) -> None:
        """``devices``: as ``Messenger.devices`` returns them (device_id, trust, …)."""
        super().__init__()
        self.username, self.devices = username, devices

    def compose(self) -> ComposeResult:
        options = []
        for device in self.devices:
            label = Text(clean_line(str(device["device_id"]), 40), style="bold")
            label.append(f"  {clean_line(str(device.get('trust', '')), 20)}", style="dim")
            options.append(Option(label, id=str(device["device_id"])))
        with Vertical(classes="modal-box", id="pick-device-box"):
            yield Static(Text(f"Which device of {clean_line(self.username, 64)}?", style="bold"))
            yield OptionList(*options, id="pick-device-list")

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
