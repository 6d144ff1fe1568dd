"""The TUI's only way to the network: a thin holder of the SDK objects, injected into ``MeloApp``.

Tests hand the App a ``Backend`` on a temporary home pointing at a live server; ``melo-tui`` builds one
from MELO_HOME and the profile. Everything here is SDK calls: no HTTP, WebSocket or crypto of its own.

While it holds a profile (logged in, until closed) it serves the profile's control socket, as `melo
listen` does: `melo send`, `history`, `edit`… on the same profile run on this Messenger instead of
failing because the profile is in use (``melo_protocol.client.control``).
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from melo_protocol.client import CredentialStore, MeloClient
from melo_protocol.client.control import serving
from melo_protocol.client.messenger import Messenger

DEFAULT_SERVER = "http://127.0.0.1:8088"
ClientFactory = Callable[[str | None, CredentialStore], MeloClient]


def _default_client(server_url: str | None, store: CredentialStore) -> MeloClient:
    return MeloClient(server_url, store=store, user_agent="melo-tui")


@dataclass
class Backend:
    store: CredentialStore
    server_url: str | None = None
    client_factory: ClientFactory = _default_client
    live: bool = True
    messenger: Messenger | None = None
    is_admin: bool = False
    username: str = ""
    warnings: list[str] = field(default_factory=list)
    control_socket: Path | None = None  # where `melo` commands on this profile reach us, while logged in
    _clients: list[MeloClient] = field(default_factory=list)
    _control: contextlib.AsyncExitStack | None = None

    @property
    def default_server(self) -> str:
        return self.server_url or self.store.stored_server() or DEFAULT_SERVER

    def has_stored_login(self) -> bool:
        creds = self.store.load()
        return creds is not None and (self.server_url is None or
                                      creds.server_url.rstrip("/") == self.server_url.rstrip("/"))

    def _client(self, server_url: str | None) -> MeloClient:
        client = self.client_factory(server_url, self.store)
        self._clients.append(client)
        return client

    async def resume(self) -> Messenger:
        """Auto-login from the stored credentials (the refresh token is used when the access token expired)."""
        return await self._open(self._client(self.server_url))

    async def login(self, server_url: str, username: str, password: str) -> Messenger:
        client = self._client(server_url)
        await client.login(username, password, device_name="melo-tui")
        return await self._open(client)

    async def register(self, server_url: str, username: str, password: str, token: str | None) -> Messenger:
        client = self._client(server_url)
        await client.register(username, password, registration_token=token or None, device_name="melo-tui")
        return await self._open(client)

    async def _open(self, client: MeloClient) -> Messenger:
        messenger = Messenger.open(client, self.store)
        await messenger.start(live=self.live)
        me = await client.whoami()
        self.is_admin, self.username = me.is_admin, me.username
        self.messenger = messenger
        await self._serve(messenger)
        return messenger

    async def _serve(self, messenger: Messenger) -> None:
        if self._control is not None:
            await self._control.aclose()
        control = contextlib.AsyncExitStack()
        self.control_socket = await control.enter_async_context(serving(messenger, self.store))
        self._control = control

    async def close(self) -> None:
        if self._control is not None:  # first: no command may start on a Messenger that is closing
            control, self._control, self.control_socket = self._control, None, None
            await control.aclose()
        if self.messenger is not None:
            await self.messenger.close()
            self.messenger = None
        for client in self._clients:
            await client.aclose()
        self._clients.clear()
