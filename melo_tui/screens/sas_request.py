"""A contact asks to verify one of our devices by emoji (SAS): Accept (a / Enter) or Decline (d / Escape).
Dismissed with True or False (None when they cancelled first)."""

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from melo_tui.sanitize import clean_line


class SasRequestScreen(ModalScreen[bool | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "answer(True)", "Accept", id="sas_request.accept"),
        Binding("enter", "answer(True)", "Accept", show=False, id="sas_request.accept_enter", priority=True),
        Binding("d", "answer(False)", "Decline", id="sas_request.decline"),
        Binding("escape", "answer(False)", "Decline", show=False, id="sas_request.decline_escape"),
    ]

    def __init__(self, username: str, device_id: str, transaction_id: str) -> None:
        super().__init__()
        self.username, self.device_id, self.transaction_id = username, device_id, transaction_id

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="sas-request-box"):
            who = Text(clean_line(self.username, 64), style="bold cyan")
            who.append(" wants to verify", style="bold")
            yield Static(who, id="sas-request-who")
            yield Static(Text(f"from device {clean_line(self.device_id, 40)}, by comparing emoji", style="dim"))
            with Horizontal(id="sas-request-buttons"):
                yield Button("Accept (a)", variant="success", id="accept")
                yield Button("Decline (d)", variant="error", id="decline")

    def action_answer(self, accept: bool) -> None:
        self.dismiss(accept)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "accept")
