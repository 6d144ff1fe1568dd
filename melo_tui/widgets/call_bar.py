"""The call bar: docked on the chat screen while a call is on (peer, state, timer, mute, level, quality).

It shows any object with the shape of ``melo_protocol.client.call.Call`` (``CallLike``), so a test can
render it from a fixed state. Keys while it has focus: m toggles mute, h (or Ctrl+H anywhere) hangs up.
"""

from typing import Any, ClassVar, Protocol

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static

from melo_protocol.client.call_state import CallQuality
from melo_tui.sanitize import clean_line

LEVEL_CELLS = 8


class CallLike(Protocol):
    peer: str
    state: Any  # CallState (a str enum)
    reason: str | None

    @property
    def muted(self) -> bool: ...

    @property
    def level(self) -> float: ...

    @property
    def duration(self) -> float: ...

    async def quality(self) -> CallQuality: ...


def timer(seconds: float) -> str:
    """mm:ss (minutes keep counting past an hour)."""
    total = max(0, int(seconds))
    return f"{total // 60:02d}:{total % 60:02d}"


def level_meter(level: float) -> str:
    filled = round(max(0.0, min(1.0, level)) * LEVEL_CELLS)
    return "▮" * filled + "▯" * (LEVEL_CELLS - filled)


def quality_text(quality: CallQuality | None) -> str:
    if quality is None:
        return "RTT – · loss –"
    rtt = f"{quality.rtt_ms:.0f} ms" if quality.rtt_ms is not None else "–"
    loss = f"{quality.loss_fraction * 100:.1f}%" if quality.loss_fraction is not None else "–"
    return f"RTT {rtt} · loss {loss}"


class CallBar(Static, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "mute", "Mute", id="call.mute"),
        Binding("h", "hang_up", "Hang up", id="call.hang_up"),
        Binding("ctrl+h", "hang_up", "Hang up", show=False, id="call.hang_up_ctrl"),
    ]

    class MuteWanted(Message):
        def __init__(self, on: bool) -> None:
            super().__init__()
            self.on = on

    class HangUpWanted(Message):
        pass

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", markup=False, **kwargs)
        self.call: CallLike | None = None
        self.quality: CallQuality | None = None

    def on_mount(self) -> None:
        self.display = False
        self.set_interval(1.0, self.tick)

    def show_call(self, call: CallLike | None) -> None:
        """Show ``call`` (None hides the bar)."""
        self.call = call
        self.quality = None
        self.display = call is not None
        self.show()

    async def tick(self) -> None:
        """Every second: the timer, the level and the quality (RTT, loss) from ``Call.quality()``."""
        call = self.call
        if call is None:
            return
        if str(call.state) == "connected":
            self.quality = await call.quality()
        self.show()

    def render_text(self) -> Text:
        call = self.call
        if call is None:
            return Text("")
        state = str(call.state)
        ended = state == "ended"
        text = Text("☎ ", style="bold")
        text.append(clean_line(call.peer, 40), style="bold cyan")
        label = f"ended ({call.reason.replace('_', ' ')})" if ended and call.reason else state
        text.append(f"  {label}", style="red" if ended else "green" if state == "connected" else "yellow")
        text.append(f"  {timer(call.duration)}", style="bold")
        text.append("  muted" if call.muted else "  mic on", style="red" if call.muted else "")
        text.append(f"  {level_meter(call.level)}", style="magenta")
        text.append(f"  {quality_text(self.quality)}", style="dim")
        if not ended:
            text.append("  [m] mute  [h] hang up", style="dim")
        return text

    def show(self) -> None:
        self.update(self.render_text())

    @property
    def text(self) -> str:
        return self.render_text().plain

    def action_mute(self) -> None:
        if self.call is not None:
            self.post_message(self.MuteWanted(not self.call.muted))

    def action_hang_up(self) -> None:
        if self.call is not None:
            self.post_message(self.HangUpWanted())
