"""First run: server URL, then log in or register (with an optional registration token and invite code).

An invite code (from ``/invite`` or ``melo invite create``) is joined right after logging in or registering,
and its chat opens: a new user arrives straight in the conversation they were invited to.
"""

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from melo_tui.workers import ui_handler


class LoginScreen(Screen[None]):
    class Submitted(Message):
        def __init__(self, server: str, username: str, password: str, token: str | None, register: bool,
                     invite: str | None = None) -> None:
            super().__init__()
            self.server, self.username, self.password = server, username, password
            self.token, self.register, self.invite = token, register, invite

    def __init__(self, server_url: str) -> None:
        super().__init__()
        self.server_url = server_url

    def compose(self) -> ComposeResult:
        yield Static(Text("Melo · log in", style="bold"), classes="screen-header")
        with Vertical(id="login-form"):
            yield Label("Welcome to Melo: log in, or register a new account.", id="login-title")
            yield self._field(Input(self.server_url, id="server"), "Server")
            yield self._field(Input(id="username", placeholder="username"), "Username")
            yield self._field(Input(id="password", password=True, placeholder="password"), "Password")
            yield self._field(Input(id="token", placeholder="only to register, when the server asks for one"),
                              "Registration token")
            yield self._field(Input(id="invite", placeholder="optional: a chat's invite code, joined once you are in"),
                              "Invite code")
            with Horizontal(id="login-buttons"):
                yield Button("Log in", id="login", variant="primary")
                yield Button("Register", id="register")
        yield Footer()

    @staticmethod
    def _field(widget: Input, title: str) -> Input:
        widget.border_title = title
        return widget

    @ui_handler
    def on_mount(self) -> None:
        self.query_one("#username" if self.server_url else "#server", Input).focus()

    def _submit(self, register: bool) -> None:
        value = {i.id: i.value for i in self.query(Input)}
        if not value["server"].strip() or not value["username"].strip() or not value["password"]:
            self.notify("Server, username and password are needed.", severity="warning")
            return
        self.post_message(self.Submitted(value["server"].strip(), value["username"].strip(), value["password"],
                                         value["token"].strip() or None, register, value["invite"].strip() or None))

    @on(Input.Submitted)
    def _enter(self, event: Input.Submitted) -> None:
        if event.input.id in ("password", "token", "invite"):
            self._submit(register=event.input.id != "password")
        else:
            self.focus_next()

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        self._submit(register=event.button.id == "register")

    def set_busy(self, busy: bool) -> None:
        for button in self.query(Button):
            button.disabled = busy
