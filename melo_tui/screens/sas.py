"""Interactive SAS verification: the 7 emoji (and 3 numbers) both people compare, then "They match"
(y) or "They don't match" (n); Escape cancels, or closes once it has ended.

The screen only shows a verification and reports the user's decision to ``decide`` (True: match,
False: no match, None: cancel); the app's ``SasFlow`` calls the SDK and feeds new states to ``show``.
"""

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from melo_tui.sanitize import clean_line
from melo_tui.workers import ui_handler

ENDED = ("verified", "cancelled")
CELL = 11  # columns per emoji and its name


def outcome(state: str, cancel_code: str | None, peer: str) -> Text:
    """What the state means to the user, one line."""
    if state == "started":
        return Text(f"Waiting for {peer} to accept…", style="dim")
    if state in ("created", "accepted"):
        return Text("Exchanging keys…", style="dim")
    if state == "keys_exchanged":
        return Text(f"Do these match what {peer} sees, in the same order?")
    if state == "confirmed":
        return Text(f"You confirmed. Waiting for {peer}…", style="dim")
    if state == "verified":
        return Text(f"✓ Verified: {peer}'s device is now trusted.", style="bold green")
    if cancel_code == "m.mismatched_sas":
        return Text("✗ The emoji don't match: not verified.", style="bold red")
    if cancel_code == "m.user":
        return Text("Cancelled: not verified.", style="bold yellow")
    return Text(f"✗ Verification failed ({clean_line(cancel_code or 'unknown', 40)}): not verified.", style="bold red")


class SasScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "decide(True)", "They match", id="sas.match"),
        Binding("n", "decide(False)", "They don't match", id="sas.mismatch"),
        Binding("escape", "cancel", "Cancel", id="sas.cancel"),
    ]

    def __init__(self, username: str, device_id: str, transaction_id: str, decide: Callable[[bool | None], None],
                 *, state: str = "started") -> None:
        super().__init__()
        self.username, self.device_id, self.transaction_id = username, device_id, transaction_id
        self.peer = clean_line(username, 64)
        self._decide = decide
        self.state = state
        self.cancel_code: str | None = None
        self.emoji: list[tuple[str, str]] = []
        self.decimals: tuple[int, int, int] | None = None
        self.decided = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box", id="sas-box"):
            title = Text("Verify ", style="bold")
            title.append(self.peer, style="bold cyan")
            title.append(f" · device {clean_line(self.device_id, 40)}", style="dim")
            yield Static(title)
            yield Static(Text("Compare these emoji with the other screen, by emoji and name.", style="dim"))
            yield Static(self._emoji_text(), id="sas-emoji")
            yield Static(self._decimals_text(), id="sas-decimals")
            yield Static(outcome(self.state, self.cancel_code, self.peer), id="sas-status")
            with Horizontal(id="sas-buttons"):
                yield Button("They match (y)", variant="success", id="sas-match")
                yield Button("They don't match (n)", variant="error", id="sas-mismatch")
            yield Static(self._hint(), id="sas-hint")

    @ui_handler
    def on_mount(self) -> None:
        self._refresh_widgets()

    # -- updates from the flow -----------------------------------------------------------------------------
    def show(self, state: str, *, cancel_code: str | None = None, emoji: Sequence[tuple[str, str]] | None = None,
             decimals: tuple[int, int, int] | None = None) -> None:
        self.state, self.cancel_code = state, cancel_code
        if emoji is not None:
            self.emoji = list(emoji)
        if decimals is not None:
            self.decimals = decimals
        if self.is_mounted:
            self._refresh_widgets()

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def can_decide(self) -> bool:
        return self.state == "keys_exchanged" and bool(self.emoji) and not self.decided

    def _refresh_widgets(self) -> None:
        self.query_one("#sas-emoji", Static).update(self._emoji_text())
        self.query_one("#sas-decimals", Static).update(self._decimals_text())
        self.query_one("#sas-status", Static).update(outcome(self.state, self.cancel_code, self.peer))
        self.query_one("#sas-hint", Static).update(self._hint())
        for button in self.query(Button):
            button.disabled = not self.can_decide
        self.query_one("#sas-buttons").display = not self.ended

    def _emoji_text(self) -> Text:
        if not self.emoji:
            return Text("\n")
        text = Text(justify="center")
        for symbol, _ in self.emoji:
            text.append(_centre(symbol), style="bold")
        text.append("\n")
        for _, name in self.emoji:
            text.append(_centre(name), style="cyan")
        return text

    def _decimals_text(self) -> Text:
        if self.decimals is None:
            return Text("")
        return Text("   ".join(str(d) for d in self.decimals), style="bold", justify="center")

    def _hint(self) -> Text:
        return Text("Escape closes." if self.ended else "Escape cancels the verification.", style="dim")

    # -- the user's decision -------------------------------------------------------------------------------
    def action_decide(self, match: bool) -> None:
        if self.can_decide:
            self.decided = True
            self._refresh_widgets()
            self._decide(match)

    def action_cancel(self) -> None:
        if not self.ended:
            self._decide(None)
        self.dismiss(None)

    @on(Button.Pressed, "#sas-match")
    def _match(self) -> None:
        self.action_decide(True)

    @on(Button.Pressed, "#sas-mismatch")
    def _mismatch(self) -> None:
        self.action_decide(False)


def _centre(cell: str) -> str:
    """``cell`` centred in CELL columns, by terminal width (emoji take two)."""
    pad = max(CELL - Text(cell).cell_len, 0)
    return " " * (pad // 2) + cell + " " * (pad - pad // 2)
