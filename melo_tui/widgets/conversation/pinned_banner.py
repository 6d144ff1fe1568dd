"""The pinned banner: one line above the conversation with the latest pinned message (and how many there are)."""

from rich.text import Text
from textual.widgets import Static

from melo_protocol.client.events import Message
from melo_tui.sanitize import clean_line


class PinnedBanner(Static):
    """Hidden while the open chat has no pins; ``rendered`` is the exact text on screen (tests read it)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", markup=False, **kwargs)  # type: ignore[arg-type]
        self.pins: list[Message] = []
        self.rendered = Text()
        self.display = False

    def show_pins(self, pins: list[Message]) -> None:
        self.pins = [p for p in pins if p.status != "deleted"]
        self.display = bool(self.pins)
        if not self.pins:
            self.rendered = Text()
            self.update(self.rendered)
            return
        latest = self.pins[-1]
        body = latest.text if latest.status == "ok" and latest.text is not None else "🔒 encrypted message"
        text = Text("📌 ", style="yellow")
        text.append(clean_line(latest.sender, 32), style="bold")
        text.append(": " + clean_line(body, 120))
        if len(self.pins) > 1:
            text.append(f"  (+{len(self.pins) - 1} more pinned)", style="dim")
        self.rendered = text
        self.update(text)
