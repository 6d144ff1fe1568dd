"""What every group of app actions may use: the app's state, the open chat screen, the messenger, a prompt.

``MeloApp`` is made of these groups (``ChatActions``, ``AdminActions``, ``ProfileActions``,
``CallActions``); each is an ``App`` so that its ``@on`` handlers and ``action_*`` methods are the app's.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from textual.app import App
from textual.timer import Timer

from melo_protocol.client.call_manager import CallManager
from melo_protocol.client.messenger import Messenger
from melo_tui.backend import Backend
from melo_tui.formatting import Formatting
from melo_tui.media import CallMedia, Notifier
from melo_tui.sas_flow import SasFlow
from melo_tui.screens.chat import ChatScreen
from melo_tui.screens.incoming_call import IncomingCallScreen
from melo_tui.screens.prompt import PromptScreen

BackendFactory = Callable[[str], Backend]  # a profile's name → its backend (not yet logged in)


class AppBase(App[None]):
    backends: BackendFactory
    backend: Backend
    formatting: Formatting
    connection_state: str
    call_media: CallMedia
    call_options: dict[str, Any]
    calls: CallManager | None
    desktop_notify: Notifier | None
    _incoming: dict[str, IncomingCallScreen]
    _state_poll: Timer | None
    sas: SasFlow
    auto_login: Callable[[], Any]  # the app's login worker (a profile switch starts it)
    _close_calls: Callable[[], Awaitable[None]]  # ends every call (``CallActions``)

    @property
    def chat_screen(self) -> ChatScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, ChatScreen):
                return screen
        return None

    def _messenger(self) -> Messenger:
        assert self.backend.messenger is not None
        return self.backend.messenger

    def _prompt(self, title: str, fields: list[tuple[str, str]], then: Callable[[dict[str, str]], Any]) -> None:
        """Ask for ``fields`` in a modal; ``then(values)`` unless the user cancels."""

        def done(values: dict[str, str] | None) -> None:
            if values is not None:
                then(values)

        self.push_screen(PromptScreen(title, fields), done)
