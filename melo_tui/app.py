"""``MeloApp``: the Textual application. It gets its backends (SDK objects) injected: a factory that makes
the backend of a profile, called at start and on every profile switch.

The app owns what outlives a screen: login/auto-login, the live event loop (a worker that forwards
typed SDK events to the screens as messages), and what the chat screen asks for. Its palette, admin,
profile and call actions are in ``melo_tui.actions``, one group each, and ``MeloApp`` is made of them.
"""

from typing import Any, ClassVar

from textual import on
from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.timer import Timer

from melo_protocol.client import events as ev
from melo_protocol.client.call_manager import CallManager
from melo_protocol.client.errors import MeloError, ProfileInUse
from melo_tui.actions.admin import AdminActions
from melo_tui.actions.base import BackendFactory
from melo_tui.actions.calls import CallActions
from melo_tui.actions.chats import ChatActions
from melo_tui.actions.profiles import ProfileActions
from melo_tui.errors import reason_of
from melo_tui.formatting import Formatting
from melo_tui.media import CallMedia, Notifier, device_media
from melo_tui.messages import ConnectionChanged, LiveEvent
from melo_tui.palette import PaletteCommands
from melo_tui.sanitize import clean_line
from melo_tui.sas_flow import SasFlow
from melo_tui.screens.chat import ChatScreen
from melo_tui.screens.chat_info import ChatInfoScreen
from melo_tui.screens.help import HelpScreen
from melo_tui.screens.incoming_call import IncomingCallScreen
from melo_tui.screens.login import LoginScreen
from melo_tui.workers import ui_work


class MeloApp(ChatActions, AdminActions, ProfileActions, CallActions):
    CSS_PATH = "app.tcss"
    TITLE = "Melo"
    COMMANDS = App.COMMANDS | {PaletteCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", id="app.help"),
        Binding("question_mark", "help", "Help", show=False, id="app.help_key"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit"),
        Binding("ctrl+h", "hang_up", "Hang up", show=False, id="app.hang_up"),
    ]

    def __init__(
        self,
        backends: BackendFactory,
        profile: str,
        *,
        formatting: Formatting | None = None,
        call_media: CallMedia = device_media,
        call_options: dict[str, Any] | None = None,
        desktop_notify: Notifier | None = None,
    ) -> None:
        super().__init__()
        self.backends = backends
        self.backend = backends(profile)  # ValueError for a profile name that cannot be
        self.formatting = formatting or Formatting()
        self.connection_state = "offline"
        self.call_media = call_media
        self.call_options = call_options or {}
        self.calls: CallManager | None = None
        self._incoming: dict[str, IncomingCallScreen] = {}
        self.desktop_notify = desktop_notify
        self._state_poll: Timer | None = None
        self.sas = SasFlow(self)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification is plain text: they quote server errors, usernames and titles (never markup)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # -- start: auto-login or the login screen ----------------------------------------------------------
    def _flush_warnings(self) -> None:
        while self.backend.warnings:
            self.notify(clean_line(self.backend.warnings.pop(0), 300), severity="warning", timeout=8)

    def on_mount(self) -> None:
        self._flush_warnings()
        if self.backend.has_stored_login():
            self.auto_login()
        else:
            self.push_screen(LoginScreen(self.backend.default_server))

    @ui_work(exclusive=True, group="login")
    async def auto_login(self) -> None:
        try:
            await self.backend.resume()
        except ProfileInUse as exc:
            await self.backend.close()
            self.exit(return_code=1, message=f"melo-tui: {exc}")
            return
        except MeloError as exc:
            self.notify(f"Please log in again: {reason_of(exc)}", severity="warning")
            self.push_screen(LoginScreen(self.backend.default_server))
            return
        self._logged_in()

    @on(LoginScreen.Submitted)
    def _login(self, event: LoginScreen.Submitted) -> None:
        self.login(event)

    @ui_work(exclusive=True, group="login", what=lambda form: "Registration" if form.register else "Login")
    async def login(self, form: LoginScreen.Submitted) -> None:
        screen = self.screen
        if isinstance(screen, LoginScreen):
            screen.set_busy(True)
        try:
            if form.register:
                await self.backend.register(form.server, form.username, form.password, form.token)
            else:
                await self.backend.login(form.server, form.username, form.password)
        except MeloError:
            if isinstance(screen, LoginScreen):  # the form is the user's again, to correct and resend
                screen.set_busy(False)
            raise
        self._logged_in(join_code=form.invite)

    def _logged_in(self, join_code: str | None = None) -> None:
        self._flush_warnings()
        messenger = self.backend.messenger
        assert messenger is not None
        state = messenger.stream.state if messenger.stream is not None else "offline"
        self.call_after_refresh(self.set_connection_state, state)  # once the new screen's header exists
        chat = ChatScreen(messenger, self.formatting, join_code=join_code)
        if isinstance(self.screen, LoginScreen):
            self.switch_screen(chat)
        else:
            self.push_screen(chat)
        if self.backend.live:
            if self.calls is None or self.calls.messenger is not messenger:
                self.calls = CallManager(messenger, **self.call_options)
                self.calls.on_incoming(self._incoming_call)
            self.listen()
            if self._state_poll is not None:
                self._state_poll.stop()
            self._state_poll = self.set_interval(0.5, self._poll_connection_state)

    def _poll_connection_state(self) -> None:
        # the SDK reports state changes as events only when a frame arrives; the header must not wait
        messenger = self.backend.messenger
        stream = messenger.stream if messenger is not None else None
        screen = self.chat_screen
        shown = screen.status if screen is not None else ""
        if stream is not None and (stream.state != self.connection_state or not shown.endswith(stream.state)):
            self.set_connection_state(stream.state)  # back to "connected", the chat screen sends its outbox

    # -- the live event stream --------------------------------------------------------------------------
    @ui_work(exclusive=True, group="events")
    async def listen(self) -> None:
        messenger = self.backend.messenger
        assert messenger is not None
        try:
            async for event in messenger.events():
                await self.dispatch_event(event)
        except MeloError as exc:
            self.notify(f"Disconnected: {reason_of(exc)}", severity="error", timeout=15)
        self.set_connection_state("closed")

    async def dispatch_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.CallSignal):
            if self.calls is not None:
                try:
                    await self.calls.handle(event)
                except Exception as exc:  # one bad signal must not end the stream
                    self.log.error("call signal failed", event=event, error=exc)
            return
        if isinstance(event, ev.ConnectionState):
            self.set_connection_state(event.state)
        elif isinstance(event, ev.SessionEnded):
            self.notify(f"Session ended: {clean_line(event.reason, 100)}", severity="error", timeout=15)
        elif isinstance(event, ev.VerificationUpdate):
            self.sas.handle(event)
        screen = self.chat_screen
        if screen is not None:
            screen.post_message(LiveEvent(event))
        top = self.screen_stack[-1] if self.screen_stack else None  # none left while the app shuts down
        if isinstance(top, ChatInfoScreen):
            top.post_message(LiveEvent(event))

    def set_connection_state(self, state: str) -> None:
        self.connection_state = state
        name = self.backend.messenger.username if self.backend.messenger else ""
        screen = self.chat_screen
        if screen is not None:
            screen.post_message(ConnectionChanged(name, state))

    # -- what the chat screen asks for ------------------------------------------------------------------
    @on(ChatScreen.JoinWanted)
    def _join_wanted(self, wanted: ChatScreen.JoinWanted) -> None:
        self.join(wanted.code)

    @on(ChatScreen.InviteWanted)
    def _invite_wanted(self, wanted: ChatScreen.InviteWanted) -> None:
        self.invite(wanted.chat_id, wanted.username)

    @on(ChatScreen.LeaveWanted)
    def _leave_wanted(self, wanted: ChatScreen.LeaveWanted) -> None:
        self.leave(wanted.chat_id)

    @on(ChatScreen.VerifyWanted)
    def _verify_wanted(self, wanted: ChatScreen.VerifyWanted) -> None:
        self.verify(wanted.username)

    @on(ChatScreen.CallWanted)
    def _call_wanted(self, wanted: ChatScreen.CallWanted) -> None:
        self.start_call(wanted.username, wanted.chat_id)

    @on(ChatScreen.Alerted)
    def _alerted(self, alerted: ChatScreen.Alerted) -> None:
        self.alert(alerted.message, alerted.chat_title, here=alerted.here)

    # -- notifications ----------------------------------------------------------------------------------
    def alert(self, message: ev.Message, chat_title: str, *, here: bool) -> None:
        """Someone else's message arrived: the bell for other chats, a toast for mentions, and the desktop."""
        me = self.backend.username or (self.backend.messenger.username if self.backend.messenger else "")
        mention = bool(me and message.status == "ok" and message.text and f"@{me}" in message.text)
        seen = here and self.app_focus  # the user is looking at this chat
        if seen and not mention:
            return
        self.bell()
        sender, chat = clean_line(message.sender, 64), clean_line(chat_title, 64)
        if mention and not here:
            self.notify(f"{sender} mentioned you in {chat}", title="Mention", timeout=8)
        if self.desktop_notify is not None and (not seen or mention):
            body = f"{sender} mentioned you" if mention else f"New message from {sender}"
            self.run_worker(self._desktop(f"Melo · {chat}", body), group="desktop-notify")

    async def _desktop(self, title: str, body: str) -> None:
        assert self.desktop_notify is not None
        try:
            await self.desktop_notify(title, body)
        except OSError as exc:  # a broken notifier must not break the chat
            self.log.warning("desktop notification failed", error=exc)

    # -- screens and quitting ---------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def on_unmount(self) -> None:
        await self._close_calls()
        await self.backend.close()  # however the app ends, the stream and HTTP clients close with it

    async def action_quit(self) -> None:
        await self._close_calls()
        await self.backend.close()
        self.exit()
