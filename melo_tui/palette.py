"""The command palette (Ctrl+P): every entry of ``melo_tui.actions.PALETTE`` the user may run, once logged in."""

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from melo_tui.actions import PALETTE
from melo_tui.actions.base import AppBase

Action = tuple[str, str, Callable[[], object]]


class PaletteCommands(Provider):
    def _actions(self) -> list[Action]:
        app: AppBase = self.app  # type: ignore[assignment]  # the palette is MeloApp's, made of AppBase
        if app.backend.messenger is None:
            return []
        return [
            (entry.name, entry.help, partial(getattr(app, f"action_{entry.action}"), *entry.args))
            for entry in PALETTE
            if app.backend.is_admin or not entry.admin
        ]

    async def discover(self) -> Hits:
        for name, help_text, callback in self._actions():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._actions():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
