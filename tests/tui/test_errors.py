"""The TUI's one wording table for SDK errors (`melo_tui.errors`), and `ui_work` using it."""

from textual.app import App

from melo_protocol.client.errors import (
    BadRequest,
    ClientError,
    Forbidden,
    InvalidCredentials,
    MeloError,
    NotLoggedIn,
    RateLimited,
    ServerUnreachable,
    SessionRevoked,
    error_from_code,
)
from melo_tui.errors import describe, reason_of
from melo_tui.workers import ui_work


def test_the_default_quotes_the_servers_message_and_code() -> None:
    exc = BadRequest(400, "invalid_duration", "invalid duration: soon")
    assert describe("/timer", exc) == ("/timer failed: invalid duration: soon (invalid_duration)", "error")


def test_a_refusal_is_a_warning_that_says_refused() -> None:
    exc = Forbidden(403, "chat_admin_required", "owners and admins only")
    assert describe("Removing bob", exc) == (
        "Removing bob was refused: owners and admins only (chat_admin_required)",
        "warning",
    )


def test_a_code_wins_over_the_class() -> None:
    slow = error_from_code("slow_mode", "wait 10 s")  # a 429: RateLimited, but slow mode has its own words
    assert isinstance(slow, RateLimited)
    assert describe("Sending", slow) == ("Sending was held back by slow mode: wait 10 s (slow_mode)", "warning")
    read_only = error_from_code("channel_read_only", "read only")
    assert isinstance(read_only, Forbidden)
    text, severity = describe("Sending", read_only)
    assert text.startswith("Sending was refused: only admins post in this channel") and severity == "warning"


def test_rate_limits_and_ended_sessions_say_what_to_do() -> None:
    assert describe("Join", RateLimited(429, "rate_limited", "slow down")) == (
        "Join failed, too many requests: slow down (rate_limited). Try again in a moment.",
        "warning",
    )
    text, severity = describe("Loading chats", SessionRevoked(401, "session_revoked", "revoked"))
    assert text == "Loading chats failed: revoked (session_revoked). This session has ended; log in again."
    assert severity == "error"
    assert describe("Loading chats", NotLoggedIn("no credentials")) == (
        "Loading chats failed: no credentials. Log in first.",
        "error",
    )


def test_errors_without_a_code_quote_the_message_alone() -> None:
    assert describe("Call", ServerUnreachable("cannot reach the server")) == (
        "Call failed: cannot reach the server",
        "error",
    )
    assert describe("Call", MeloError("no audio")) == ("Call failed: no audio", "error")
    assert describe("Login", InvalidCredentials(401, "invalid_credentials", "wrong password"))[0] == (
        "Login failed: wrong password (invalid_credentials)"
    )


def test_the_reason_is_one_clean_line_and_the_code_is_not_repeated() -> None:
    exc = ClientError("chat_not_found", "chat_not_found: \x1b[31mno\nsuch chat")
    reason = reason_of(exc)
    assert "\x1b" not in reason and "\n" not in reason  # shown as visible marks, never acted on
    assert reason.startswith("chat_not_found: ") and reason.endswith("such chat")  # no second "(code)"
    assert len(reason_of(BadRequest(400, "x", "y" * 1000))) <= 200


class Failing(App[None]):
    @ui_work(what=lambda name: f"Verifying {name}")
    async def verify(self, name: str) -> None:
        raise Forbidden(403, "forbidden", "not yours")

    @ui_work()
    async def load_chats(self) -> None:
        raise BadRequest(400, "bad_request", "nope")


async def test_ui_work_notifies_once_and_the_app_goes_on() -> None:
    app = Failing()
    async with app.run_test() as pilot:
        await app.verify("bob").wait()
        await app.load_chats().wait()
        await pilot.pause()
        notes = [(n.message, n.severity) for n in app._notifications]
        assert notes == [
            ("Verifying bob was refused: not yours (forbidden)", "warning"),
            ("Load chats failed: nope (bad_request)", "error"),
        ]
        assert app.is_running
