"""Exit codes, and the one place SDK exceptions become them."""

from enum import IntEnum
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from melo_cli.output import Output


class ExitCode(IntEnum):
    OK = 0
    USER_ERROR = 1  # not found, forbidden, bad value, conflict, rate limited, wrong password
    USAGE = 2  # bad command line
    SERVER = 3  # server unreachable or failing
    AUTH = 4  # not logged in, or the session was revoked
    TRUST = 5  # an end-to-end trust problem (key changed, unverified device)
    SMOKE = 6  # `melo smoke` found a failure


class CliError(Exception):
    """A failure found by the CLI itself (an ambiguous chat title, a refused confirmation, a bad file).

    Commands raise it; ``exit_code_for`` maps it like any SDK error, so exit codes stay decided here.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        exit_code: "ExitCode | None" = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_code = exit_code if exit_code is not None else ExitCode.USER_ERROR
        self.details = dict(details or {})


ACCOUNT_CLOSED = {
    "account_banned": "this account is banned: ask the server's admins",
    "account_deactivated": "this account is deactivated: ask the server's admins",
}

EXIT_CODES_EPILOG = (
    "Exit codes: 0 ok · 1 user error (not found, forbidden, bad value, conflict, rate limited) · "
    "2 usage · 3 server unreachable or failing · 4 not logged in or session revoked · "
    "5 E2E trust problem · 6 smoke failure"
)


def exit_code_for(exc: BaseException) -> ExitCode:
    if isinstance(exc, CliError):
        return exc.exit_code

    from melo_protocol.client import errors as e

    if isinstance(exc, e.ServerUnreachable):
        return ExitCode.SERVER
    if isinstance(exc, e.NotLoggedIn | e.SessionRevoked | e.NotAuthenticated):
        return ExitCode.AUTH
    if isinstance(exc, e.E2EError):
        return ExitCode.TRUST
    if isinstance(exc, e.ControlRequestRefused):  # the holder of the profile and this melo disagree on a request
        return ExitCode.USAGE
    if isinstance(exc, e.MeloError):
        return ExitCode.USER_ERROR
    return ExitCode.USER_ERROR


def describe(exc: BaseException) -> tuple[str, str]:
    """(code, human message) for an SDK error; never includes secrets (the SDK's messages hold none)."""
    if isinstance(exc, CliError):
        return exc.code, exc.message

    from melo_protocol.client import errors as e

    if isinstance(exc, e.NotLoggedIn):
        return "not_logged_in", f"{exc.message}; run `melo login USERNAME` first"
    if isinstance(exc, e.ApiError) and exc.code in ACCOUNT_CLOSED:
        return exc.code, ACCOUNT_CLOSED[exc.code]  # logging in again cannot help
    if isinstance(exc, e.SessionRevoked | e.NotAuthenticated):
        return exc.code, f"{exc.message}; run `melo login USERNAME` to sign in again"
    if isinstance(exc, e.RateLimited):
        # the server's message usually says when already ("post again in 60 s"): say it once
        wait = exc.retry_after
        said = wait is None or f"{wait:g} s" in exc.message
        return exc.code, exc.message if said else f"{exc.message}; retry in {wait:g} s"
    if isinstance(exc, e.ApiError | e.ClientError):
        return exc.code, exc.message
    if isinstance(exc, e.ServerUnreachable):
        return "server_unreachable", exc.message
    if isinstance(exc, e.E2EError):
        return "e2e_error", exc.message
    if isinstance(exc, e.ProfileInUse):
        return "profile_in_use", (
            exc.message + ". While `melo listen` or `melo-tui` holds a profile, send "
            "(also --at), history, edit, delete, react, pin and read run inside it; any other "
            "command that opens the profile's encrypted store fails like this until it ends"
        )
    if isinstance(exc, e.MeloError):
        return "error", exc.message
    return "error", str(exc)


def abort(output: "Output", exc: BaseException) -> NoReturn:
    """Report an SDK error on stderr and exit with its code."""
    import typer

    code = exit_code_for(exc)
    error_code, message = describe(exc)
    details = exc.details if isinstance(exc, CliError) else None
    if details is None:  # the SDK is loaded already: exit_code_for imported it for this error
        from melo_protocol.client.errors import ClientError

        details = exc.details if isinstance(exc, ClientError) else None
    output.error(message, code=error_code, exit_code=int(code), details=details)
    raise typer.Exit(int(code))
