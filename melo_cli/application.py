"""The application object: global options, built once by the root callback, handed to every command."""

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from melo_cli.output import Output
    from melo_protocol.client import CredentialStore, MeloClient
    from melo_protocol.client.messenger import Messenger

DEFAULT_SERVER = "http://127.0.0.1:8088"
T = TypeVar("T")


@dataclass
class Application:
    server: str | None  # None: the profile's server, else DEFAULT_SERVER
    profile: str
    home: Path | None
    json_mode: bool = False
    verbosity: int = 0
    profile_given: bool = False  # by --profile or MELO_PROFILE, not by `melo profiles use`
    _output: "Output | None" = field(default=None, repr=False)

    @property
    def output(self) -> "Output":
        if self._output is None:
            from melo_cli.output import Output

            self._output = Output(json_mode=self.json_mode, verbosity=self.verbosity)
        return self._output

    def want_json(self, flag: bool) -> None:
        """A command's own --json (``melo whoami --json``) counts like the global one."""
        if flag and not self.json_mode:
            self.json_mode = True
            if self._output is not None:
                self._output.json_mode = True

    def apply_options(
        self,
        *,
        server: str | None = None,
        profile: str | None = None,
        home: Path | None = None,
        json: bool = False,
        verbose: int = 0,
        quiet: bool = False,
    ) -> None:
        """Global options given after the subcommand (``melo whoami --server URL``): they win over the
        same ones given before it, as the last of a repeated option does."""
        if server:
            self.server = server
        if home is not None:
            self.home = home
        if profile:
            self.profile, self.profile_given = profile, True
        elif home is not None and not self.profile_given:
            from melo_cli.config import selected_profile

            self.profile = selected_profile(home) or "default"  # the selection stored in that home
        if quiet:
            self.verbosity = -1
        elif verbose:
            self.verbosity = max(self.verbosity, 0) + verbose
        if self._output is not None:
            self._output.verbosity = self.verbosity
        self.want_json(json)

    @property
    def home_dir(self) -> Path:
        from melo_protocol.client.tokens import default_home

        return self.home if self.home is not None else default_home()

    def fail(
        self, message: str, *, code: str = "error", exit_code: int = 1, details: dict[str, Any] | None = None
    ) -> NoReturn:
        """Report a CLI-found failure on stderr and exit; the code comes from melo_cli.errors.ExitCode."""
        from melo_cli.errors import CliError, ExitCode, abort

        abort(self.output, CliError(message, code=code, exit_code=ExitCode(exit_code), details=details))

    def store(self) -> "CredentialStore":
        from melo_protocol.client import CredentialStore

        return CredentialStore(self.home, self.profile)

    def server_url(self, store: "CredentialStore") -> str:
        return self.server or store.stored_server() or DEFAULT_SERVER

    def rate_limit_wait(self) -> float:
        """MELO_RATE_LIMIT_WAIT: the longest server-asked wait (seconds) sat out before retrying; 0: never."""
        from melo_protocol.client.transport import DEFAULT_RATE_LIMIT_WAIT_S

        raw = os.environ.get("MELO_RATE_LIMIT_WAIT", "").strip()
        if not raw:
            return DEFAULT_RATE_LIMIT_WAIT_S
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 3600:
            from melo_cli.errors import ExitCode

            self.fail(
                f"MELO_RATE_LIMIT_WAIT must be a number of seconds from 0 to 3600, not {raw!r}",
                code="bad_setting",
                exit_code=ExitCode.USAGE,
            )
        return value

    def client(self) -> "MeloClient":
        from melo_protocol import __version__
        from melo_protocol.client import MeloClient

        store = self.store()
        url = self.server_url(store)
        self.output.debug(f"server {url}, profile {self.profile}, home {store.home}")
        return MeloClient(
            url,
            store=store,
            user_agent=f"melo-cli/{__version__}",
            rate_limit_wait=self.rate_limit_wait(),
            on_rate_limited=lambda wait: self.output.warn(f"rate limited by the server; retrying in {wait:g} s"),
        )

    def run(self, action: Callable[["MeloClient"], Awaitable[T]]) -> T:
        """Run ``action`` with a client; any SDK or CLI error becomes its exit code here."""
        import asyncio

        from melo_cli.errors import CliError, abort
        from melo_protocol.client import MeloError

        async def go() -> T:
            async with self.client() as client:
                return await action(client)

        try:
            return asyncio.run(go())
        except (MeloError, CliError) as exc:
            abort(self.output, exc)

    def run_messenger(
        self,
        action: Callable[["Messenger"], Awaitable[T]],
        *,
        live: bool = False,
        to_device: bool = False,
        forward: tuple[str, dict[str, Any]] | None = None,
    ) -> T:
        """Run ``action`` with a started Messenger (E2E: keys uploaded; ``live`` opens the stream).

        ``to_device`` first takes in the room keys queued for this device, so a one-shot command (no
        stream) can read messages sent since the last run. ``forward`` names the same work as a
        registered action (``melo_protocol.client.actions``): when `melo listen` or `melo-tui` holds the
        profile, it runs there.
        """

        async def go(client: "MeloClient") -> T:
            from melo_protocol.client.errors import ProfileInUse
            from melo_protocol.client.messenger import Messenger

            messenger = Messenger.open(client, self.store())
            try:
                await messenger.start(live=live)
            except ProfileInUse:
                if forward is None:
                    raise
                from melo_protocol.client.control import forward as hand_over

                result = await hand_over(self.store(), *forward)
                if result is None:  # held by a process that serves no socket (melo call, melo verify)
                    raise
                return result  # type: ignore[return-value]
            try:
                if to_device:
                    await messenger.receive_pending_to_device()
                return await action(messenger)
            finally:
                await messenger.close()

        return self.run(go)

    def run_action(self, name: str, *, to_device: bool = False, **params: Any) -> dict[str, Any]:
        """Run the registered messenger action ``name`` here, or in the process holding this profile."""
        from melo_protocol.client.actions import ACTIONS

        action = ACTIONS[name]
        return self.run_messenger(lambda m: action(m, **params), to_device=to_device, forward=(name, params))


def get_app(ctx: typer.Context, json_flag: bool = False) -> Application:
    app = ctx.find_object(Application)
    if app is None:  # a command invoked without the root callback (not through `melo`)
        app = Application(server=None, profile=os.environ.get("MELO_PROFILE", "default"), home=None)
        ctx.obj = app
    app.want_json(json_flag)
    return app
