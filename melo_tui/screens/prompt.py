"""A small form modal: a few labelled fields, Enter submits, Escape cancels. Returns the values."""

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PromptScreen(ModalScreen[dict[str, str] | None]):
    BINDINGS: ClassVar[list[BindingType]] = [("escape", "cancel", "Cancel")]

    def __init__(self, title: str, fields: list[tuple[str, str]]) -> None:
        """``fields``: (key, label) pairs."""
        super().__init__()
        self.title_text = title
        self.fields = fields

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="prompt-box"):
            yield Label(self.title_text, id="prompt-title", markup=False)  # titles may name a user
            for key, label in self.fields:
                yield Label(label, markup=False)
                yield Input(id=f"field-{key}")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        if event.input is not inputs[-1]:
            self.focus_next()
            return
        self.dismiss({key: self.query_one(f"#field-{key}", Input).value.strip() for key, _ in self.fields})

    def action_cancel(self) -> None:
        self.dismiss(None)
