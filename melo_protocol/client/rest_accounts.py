"""Accounts on the REST client: registering, logging in and out, sessions, profiles, passwords."""

from melo_protocol.client import api
from melo_protocol.client.errors import NotAuthenticated, SessionRevoked
from melo_protocol.client.transport import RestTransport, build_request
from melo_protocol.wire import AccountOut, SessionList, SessionOut, TokenResponse, UserPublic


class AccountsApi(RestTransport):
    """Who you are on the server: your account, your sessions and your profile."""

    # -- auth --------------------------------------------------------------------------------

    async def register(
        self,
        username: str,
        password: str,
        registration_token: str | None = None,
        device_name: str | None = None,
    ) -> TokenResponse:
        """Create an account and log in as it (credentials are stored)."""
        tokens = await self._json(
            build_request(api.register, username, password, registration_token, device_name), TokenResponse
        )
        self._adopt(tokens)
        return tokens

    async def login(self, username: str, password: str, device_name: str | None = None) -> TokenResponse:
        tokens = await self._json(build_request(api.login, username, password, device_name), TokenResponse)
        self._adopt(tokens)
        return tokens

    async def logout(self) -> None:
        """End this session on the server and forget it locally (also when the server already ended it)."""
        try:
            await self._request(api.logout())
        except (SessionRevoked, NotAuthenticated):
            pass
        self._forget()

    async def whoami(self) -> AccountOut:
        return await self._json(api.whoami(), AccountOut)

    # -- sessions ----------------------------------------------------------------------------

    async def list_sessions(self) -> list[SessionOut]:
        return (await self._json(api.list_sessions(), SessionList)).sessions

    async def revoke_session(self, session_id: str) -> None:
        await self._request(build_request(api.revoke_session, session_id))
        if self._creds is not None and session_id == self._creds.session_id:
            self._forget()

    async def revoke_other_sessions(self) -> int:
        return int((await self._request(api.revoke_other_sessions())).json()["revoked"])

    async def revoke_all_sessions(self) -> int:
        """Revoke every session including this one; local credentials are forgotten."""
        n = int((await self._request(api.revoke_all_sessions())).json()["revoked"])
        self._forget()
        return n

    # -- accounts ----------------------------------------------------------------------------

    async def get_user(self, username: str) -> UserPublic:
        return await self._json(build_request(api.get_user, username), UserPublic)

    async def update_profile(self, display_name: str | None = None, bio: str | None = None) -> UserPublic:
        return await self._json(build_request(api.update_profile, display_name, bio), UserPublic)

    async def set_avatar(self, data: bytes, content_type: str) -> UserPublic:
        return await self._json(build_request(api.set_avatar, data, content_type), UserPublic)

    async def remove_avatar(self) -> UserPublic:
        return await self._json(api.remove_avatar(), UserPublic)

    async def change_password(self, current_password: str, new_password: str) -> int:
        """Returns how many other sessions the server revoked."""
        resp = await self._request(build_request(api.change_password, current_password, new_password))
        return int(resp.json()["sessions_revoked"])
