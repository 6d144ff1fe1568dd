"""Who is typing in the open chat; each entry expires on its own."""

import time

from rich.text import Text
from textual.widgets import Static

from melo_tui.sanitize import clean_line


class TypingIndicator(Static):
    def __init__(self, **kwargs: object) -> None:
        super().__init__("", markup=False, **kwargs)  # type: ignore[arg-type]
        self.typing: dict[str, float] = {}  # user → monotonic expiry

    def on_mount(self) -> None:
        self.set_interval(1.0, self._expire)

    def set_typing(self, user: str, typing: bool, expires_in: float = 6.0) -> None:
        if typing:
            self.typing[user] = time.monotonic() + expires_in
        else:
            self.typing.pop(user, None)
        self._show()

    def clear(self) -> None:
        self.typing.clear()
        self._show()

    def _expire(self) -> None:
        now = time.monotonic()
        gone = [u for u, t in self.typing.items() if t < now]
        for u in gone:
            del self.typing[u]
        if gone:
            self._show()

    def _show(self) -> None:
        names = sorted(clean_line(u, 32) for u in self.typing)
        if not names:
            self.update("")
        elif len(names) == 1:
            self.update(Text(f"{names[0]} is typing…", style="dim italic"))
        else:
            self.update(Text(f"{', '.join(names)} are typing…", style="dim italic"))
