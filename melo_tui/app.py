"""``MeloApp``: the Textual application. It gets its backend (SDK objects) injected.

The app owns what outlives a screen: login/auto-login, the live event loop (a worker that forwards
typed SDK events to the chat screen), and palette actions that open modals and call the SDK in workers.
"""

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from aiortc.mediastreams import MediaStreamTrack
from rich.text import Text
from textual import on
from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.timer import Timer

from melo_protocol.client import events as ev
from melo_protocol.client.calls import (
    AudioSink,
    Blackhole,
    Call,
    CallManager,
    CallState,
    SilenceTrack,
    open_microphone,
    open_speaker,
)
from melo_protocol.client.errors import MeloError
from melo_protocol.client.messenger import ProfileInUse
from melo_tui.backend import Backend
from melo_tui.commands import MeloCommands
from melo_tui.errors import reason_of
from melo_tui.formatting import Formatting
from melo_tui.messages import ChatJoined, ChatLeft, ConnectionChanged, LiveEvent
from melo_tui.sanitize import clean, clean_line
from melo_tui.sas_flow import SasFlow
from melo_tui.screens.chat import ChatScreen
from melo_tui.screens.chat_info import ChatInfoScreen
from melo_tui.screens.help import HelpScreen
from melo_tui.screens.incoming_call import IncomingCallScreen
from melo_tui.screens.info import InfoScreen
from melo_tui.screens.login import LoginScreen
from melo_tui.screens.prompt import PromptScreen
from melo_tui.screens.sessions import SessionsScreen
from melo_tui.screens.verify import VerifyScreen
from melo_tui.widgets.call_bar import CallBar
from melo_tui.workers import ui_work

CallMedia = Callable[[], tuple[MediaStreamTrack, AudioSink, list[str]]]
Notifier = Callable[[str, str], Awaitable[None]]  # (title, body) → a desktop notification
ENDED_BAR_S = 5.0  # an ended call stays on the bar this long, with its reason


def device_media() -> tuple[MediaStreamTrack, AudioSink, list[str]]:
    """The system microphone and speaker; silence or a blackhole (and a notice) where there is none."""
    source, mic_notice = open_microphone()
    sink, speaker_notice = open_speaker()
    return source, sink, [n for n in (mic_notice, speaker_notice) if n]


def desktop_notifier() -> Notifier | None:
    """Desktop notifications through ``notify-send`` (freedesktop), or None where there is none.

    Only the chat's name and the sender go to it, never message text: argv is visible to every local
    user, and the text of an end-to-end encrypted chat must not leave the app.
    """
    exe = shutil.which("notify-send")
    if exe is None:
        return None

    async def send(title: str, body: str) -> None:
        quiet = asyncio.subprocess.DEVNULL
        proc = await asyncio.create_subprocess_exec(
            exe, "--app-name=Melo", title, body, stdin=quiet, stdout=quiet, stderr=quiet
        )
        await proc.wait()

    return send


def quiet_media() -> tuple[MediaStreamTrack, AudioSink, list[str]]:
    """Silence out, received audio discarded (tests, and machines without audio)."""
    return SilenceTrack(), Blackhole(), []


class MeloApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "Melo"
    COMMANDS = App.COMMANDS | {MeloCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help", id="app.help"),
        Binding("question_mark", "help", "Help", show=False, id="app.help_key"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit"),
        Binding("ctrl+h", "hang_up", "Hang up", show=False, id="app.hang_up"),
    ]

    def __init__(
        self,
        backend: Backend,
        *,
        formatting: Formatting | None = None,
        call_media: CallMedia = device_media,
        call_options: dict[str, Any] | None = None,
        desktop_notify: Notifier | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
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

    @property
    def chat_screen(self) -> ChatScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, ChatScreen):
                return screen
        return None

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

    # -- screens ----------------------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_sessions(self) -> None:
        if self.backend.messenger is not None and not isinstance(self.screen, SessionsScreen):
            self.push_screen(SessionsScreen(self.backend.messenger.client, self.formatting))

    # -- profiles -------------------------------------------------------------------------------------------
    def action_switch_profile(self) -> None:
        current = self.backend.store.profile
        others = [p for p in self.backend.store.profiles() if p != current]
        label = f"Profile (now {current}; others: {', '.join(others) or 'none yet'}; a new name starts one)"
        self._prompt("Switch profile", [("profile", label)], lambda v: self.switch_profile(v["profile"].strip()))

    @ui_work(exclusive=True, group="profile")
    async def switch_profile(self, profile: str) -> None:
        """Log this profile's connection out of the app (it stays logged in) and open ``profile``."""
        if not profile or profile == self.backend.store.profile:
            return
        try:
            store = self.backend.store.for_profile(profile)
        except ValueError as exc:
            self.notify(f"Cannot switch: {exc}", severity="error")
            return
        self.workers.cancel_group(self, "events")
        if self._state_poll is not None:
            self._state_poll.stop()
            self._state_poll = None
        await self._close_calls()
        old = self.backend
        await old.close()
        self.backend = Backend(store, client_factory=old.client_factory, live=old.live, warnings=old.warnings)
        self.connection_state = "offline"
        while len(self.screen_stack) > 1:
            await self.pop_screen()
        self.notify(f"Profile {profile}.")
        if self.backend.has_stored_login():
            self.auto_login()
        else:
            self.push_screen(LoginScreen(store.stored_server() or old.default_server))

    def action_verify_prompt(self) -> None:
        self._prompt("Verify a contact", [("username", "Username")], lambda v: self.verify(v["username"]))

    @ui_work(group="verify", what=lambda username: f"Verifying {clean_line(username, 64)}")
    async def verify(self, username: str) -> None:
        if not username:
            self.notify("Whom to verify? /verify USERNAME", severity="warning")
            return
        digits, qr = await self._messenger().safety_number(username)
        self.push_screen(
            VerifyScreen(username, digits, qr), lambda want_sas: self.sas.start(username) if want_sas else None
        )

    def action_sas_prompt(self) -> None:
        self._prompt("Verify by emoji (SAS)", [("username", "Username")], lambda v: self.sas.start(v["username"]))

    # -- palette actions ----------------------------------------------------------------------------------
    def _messenger(self) -> Any:
        assert self.backend.messenger is not None
        return self.backend.messenger

    def _prompt(self, title: str, fields: list[tuple[str, str]], then: Any) -> None:
        def done(values: dict[str, str] | None) -> None:
            if values is not None:
                then(values)

        self.push_screen(PromptScreen(title, fields), done)

    def action_new_dm(self) -> None:
        self._prompt("New direct message", [("username", "Username")], lambda v: self.create_dm(v["username"]))

    @ui_work(group="palette", what="New DM")
    async def create_dm(self, username: str) -> None:
        await self._opened_new(await self._messenger().client.create_direct(username))

    def action_new_chat(self, kind: str) -> None:
        self._prompt(
            f"New {kind}",
            [("title", "Title"), ("members", "Members (comma-separated, optional)")],
            lambda v: self.create_chat(kind, v["title"], v["members"]),
        )

    @ui_work(group="palette", what=lambda kind, title, members: f"New {kind}")
    async def create_chat(self, kind: str, title: str, members: str) -> None:
        names = [m.strip() for m in members.split(",") if m.strip()]
        await self._opened_new(await self._messenger().client.create_chat(kind, title, names or None))

    def action_join(self) -> None:
        self._prompt("Join by code", [("code", "Invite code")], lambda v: self.join(v["code"]))

    @ui_work(group="palette", what="Join")
    async def join(self, code: str) -> None:
        await self._opened_new(await self._messenger().client.join_invite(code))

    async def _opened_new(self, chat: Any) -> None:
        screen = self.chat_screen
        if chat is not None and screen is not None:
            screen.post_message(ChatJoined(chat.id))

    def action_invite_code(self) -> None:
        screen = self.chat_screen
        if screen is None or screen.chat_id is None:
            self.notify("Open a chat first.", severity="warning")
            return
        self.invite(screen.chat_id, None)

    def action_chat_info(self) -> None:
        screen = self.chat_screen
        if screen is None or screen.chat_id is None:
            self.notify("Open a chat first.", severity="warning")
            return
        if not isinstance(self.screen, ChatInfoScreen):
            messenger = self._messenger()
            self.push_screen(ChatInfoScreen(messenger.client, screen.chat_id, messenger.username))

    @ui_work(group="palette", what="Invite")
    async def invite(self, chat_id: int, username: str | None) -> None:
        client = self._messenger().client
        if username:
            await client.add_member(chat_id, username)
            self.notify(f"Added {clean_line(username, 64)}.")
            return
        invite = await client.create_invite(chat_id)
        self.push_screen(InfoScreen("Invite code", Text(clean(invite.code), style="bold")))

    @ui_work(group="palette", what="Leave")
    async def leave(self, chat_id: int) -> None:
        await self._messenger().client.leave_chat(chat_id)
        screen = self.chat_screen
        if screen is not None:
            screen.post_message(ChatLeft(chat_id))
        self.notify("You left the chat.")

    # -- admin ----------------------------------------------------------------------------------------------
    def action_admin_ban(self) -> None:
        self._prompt(
            "Ban user",
            [("username", "Username"), ("reason", "Reason (optional)")],
            lambda v: self.admin_ban(v["username"], v["reason"]),
        )

    def action_admin_revoke(self) -> None:
        self._prompt("Revoke all sessions of", [("username", "Username")], lambda v: self.admin_revoke(v["username"]))

    def action_admin_rotate(self) -> None:
        self.admin_rotate()

    def action_admin_audit(self) -> None:
        self.admin_audit()

    @ui_work(group="admin", what="Ban")
    async def admin_ban(self, username: str, reason: str) -> None:
        await self._messenger().client.admin_ban(username, reason or None)
        self.notify(f"Banned {clean_line(username, 64)}.")

    @ui_work(group="admin", what="Revoke")
    async def admin_revoke(self, username: str) -> None:
        n = await self._messenger().client.admin_revoke_user_sessions(username)
        self.notify(f"Revoked {n} session(s) of {clean_line(username, 64)}.")

    @ui_work(group="admin", what="Rotate keys")
    async def admin_rotate(self) -> None:
        await self._messenger().client.admin_rotate_keys(jwt=True)
        self.notify("Keys rotated.")

    @ui_work(group="admin", what="Audit log")
    async def admin_audit(self) -> None:
        audit = await self._messenger().client.admin_audit(limit=100)
        body = Text()
        for entry in audit.entries:
            body.append(entry.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S  "), style="dim")
            body.append(f"{clean_line(entry.actor or '-', 32):<20} ", style="cyan")
            body.append(f"{clean_line(entry.action, 40):<24} ", style="bold")
            body.append(f"{clean_line(entry.target or '', 40):<24} ")
            body.append(clean_line(entry.outcome, 20) + "\n", style="green" if entry.outcome == "ok" else "red")
        if not audit.entries:
            body.append("No entries yet.", style="dim")
        self.push_screen(InfoScreen("Audit log (newest first)", body))

    # -- calls ------------------------------------------------------------------------------------------------
    def _media(self) -> tuple[MediaStreamTrack, AudioSink]:
        source, sink, notices = self.call_media()
        for notice in notices:
            self.notify(clean_line(notice, 200), severity="warning")
        return source, sink

    def _call_bar(self) -> CallBar | None:
        screen = self.chat_screen
        if screen is None or not screen.is_mounted:
            return None
        return screen.query_one(CallBar)

    def _track(self, call: Call, *, focus: bool = False) -> None:
        """Show ``call`` on the call bar and keep it up to date."""
        bar = self._call_bar()
        if bar is not None:
            bar.show_call(call)
            if focus:
                bar.focus()
        call.on_state(self._call_changed)

    def _call_changed(self, call: Call) -> None:
        bar = self._call_bar()
        if bar is not None and bar.call is call:
            bar.show()
        if call.state is CallState.ENDED:
            modal = self._incoming.pop(call.call_id, None)
            if modal is not None and self.screen is modal:
                modal.dismiss(None)  # the caller gave up before we answered
            self.set_timer(ENDED_BAR_S, lambda: self._hide_ended(call))

    def _hide_ended(self, call: Call) -> None:
        bar = self._call_bar()
        if bar is not None and bar.call is call:
            bar.show_call(None)

    def _incoming_call(self, call: Call) -> None:
        self._track(call)
        modal = IncomingCallScreen(call.peer)
        self._incoming[call.call_id] = modal

        def answered(accept: bool | None) -> None:
            self._incoming.pop(call.call_id, None)
            if accept is not None and call.state is not CallState.ENDED:
                self.answer_call(call, accept)

        self.push_screen(modal, answered)

    @ui_work(group="calls", what="Answering the call")
    async def answer_call(self, call: Call, accept: bool) -> None:
        assert self.calls is not None
        if not accept:
            await self.calls.reject(call)
            return
        bar = self._call_bar()
        if bar is not None:
            bar.focus()
        source, sink = self._media()
        try:
            await self.calls.accept(call, source=source, sink=sink)
        finally:  # what the media said (no microphone, say) matters whether or not the call went through
            for notice in call.notices:
                self.notify(clean_line(notice, 200), severity="warning")

    @ui_work(group="calls", what="Call")
    async def start_call(self, username: str, chat_id: int | None = None) -> None:
        if self.calls is None:
            self.notify("Calls need a live connection.", severity="error")
            return
        if self.calls.active is not None:
            self.notify("Another call is active.", severity="warning")
            return
        source, sink = self._media()
        call = await self.calls.start(username, source=source, sink=sink, chat_id=chat_id)
        self._track(call, focus=True)
        for notice in call.notices:
            self.notify(clean_line(notice, 200), severity="warning")

    @on(CallBar.MuteWanted)
    async def _mute(self, event: CallBar.MuteWanted) -> None:
        bar = self._call_bar()
        if self.calls is not None and bar is not None and isinstance(bar.call, Call):
            await self.calls.mute(bar.call, event.on)
            bar.show()

    @on(CallBar.HangUpWanted)
    def _hang_up_wanted(self, event: CallBar.HangUpWanted) -> None:
        self.action_hang_up()

    def action_hang_up(self) -> None:
        if self.calls is not None and self.calls.active is not None:
            self.hang_up(self.calls.active)

    @ui_work(group="calls")
    async def hang_up(self, call: Call) -> None:
        assert self.calls is not None
        await self.calls.hang_up(call)

    async def _close_calls(self) -> None:
        if self.calls is not None:
            calls, self.calls = self.calls, None
            await calls.close()

    async def on_unmount(self) -> None:
        await self._close_calls()
        await self.backend.close()  # however the app ends, the stream and HTTP clients close with it

    async def action_quit(self) -> None:
        await self._close_calls()
        await self.backend.close()
        self.exit()
