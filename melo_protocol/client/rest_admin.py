"""Server administration on the REST client: users, registration, tokens, stats, audit, keys, retention."""

from melo_protocol.client import api
from melo_protocol.client.errors import BadRequest
from melo_protocol.client.transport import RestTransport, build_request
from melo_protocol.wire import (
    AdminKeyList,
    AdminPasswordResetOut,
    AdminUserDetail,
    AdminUserList,
    AdminUserSummary,
    AuditList,
    KeyRotateResult,
    RegistrationMode,
    RegistrationModeBody,
    RegistrationTokenList,
    RegistrationTokenOut,
    StatsOut,
)
from melo_protocol.wire.jobs import RetentionOut, RetentionRun


class AdminApi(RestTransport):
    """What a server admin may do (the server refuses others with ``admin_required``)."""

    # -- users -------------------------------------------------------------------------------

    async def admin_list_users(self, search: str | None = None, limit: int = 100, offset: int = 0) -> AdminUserList:
        return await self._json(api.admin_list_users(search, limit, offset), AdminUserList)

    async def admin_show_user(self, username: str) -> AdminUserDetail:
        return await self._json(api.admin_show_user(username), AdminUserDetail)

    async def admin_ban(self, username: str, reason: str | None = None) -> AdminUserSummary:
        return await self._json(build_request(api.admin_ban, username, reason), AdminUserSummary)

    async def admin_unban(self, username: str) -> AdminUserSummary:
        return await self._json(api.admin_user_action(username, "unban"), AdminUserSummary)

    async def admin_deactivate(self, username: str) -> AdminUserSummary:
        return await self._json(api.admin_user_action(username, "deactivate"), AdminUserSummary)

    async def admin_promote(self, username: str) -> AdminUserSummary:
        return await self._json(api.admin_user_action(username, "promote"), AdminUserSummary)

    async def admin_demote(self, username: str) -> AdminUserSummary:
        return await self._json(api.admin_user_action(username, "demote"), AdminUserSummary)

    async def admin_reset_password(self, username: str, new_password: str | None = None) -> AdminPasswordResetOut:
        return await self._json(build_request(api.admin_reset_password, username, new_password), AdminPasswordResetOut)

    async def admin_revoke_user_sessions(self, username: str) -> int:
        return int((await self._request(api.admin_revoke_user_sessions(username))).json()["revoked"])

    # -- registration ------------------------------------------------------------------------

    async def admin_get_registration(self) -> RegistrationMode:
        return (await self._json(api.admin_get_registration(), RegistrationModeBody)).mode

    async def admin_set_registration(self, mode: RegistrationMode | str) -> RegistrationMode:
        try:
            req = build_request(api.admin_set_registration, mode)
        except ValueError:
            raise BadRequest(422, "validation_error", f"unknown registration mode {mode!r}") from None
        return (await self._json(req, RegistrationModeBody)).mode

    async def admin_create_token(
        self, expires_in_seconds: int | None = None, max_uses: int | None = None
    ) -> RegistrationTokenOut:
        return await self._json(
            build_request(api.admin_create_token, expires_in_seconds, max_uses), RegistrationTokenOut
        )

    async def admin_list_tokens(self) -> list[RegistrationTokenOut]:
        return (await self._json(api.admin_list_tokens(), RegistrationTokenList)).tokens

    async def admin_revoke_token(self, token: str) -> RegistrationTokenOut:
        return await self._json(api.admin_revoke_token(token), RegistrationTokenOut)

    # -- the server --------------------------------------------------------------------------

    async def admin_stats(self) -> StatsOut:
        return await self._json(api.admin_stats(), StatsOut)

    async def admin_audit(self, limit: int = 50, action: str | None = None) -> AuditList:
        return await self._json(api.admin_audit(limit, action), AuditList)

    async def admin_list_keys(self) -> AdminKeyList:
        return await self._json(api.admin_list_keys(), AdminKeyList)

    async def admin_rotate_keys(self, jwt: bool = True, data: bool = False) -> KeyRotateResult:
        return await self._json(api.admin_rotate_keys(jwt, data), KeyRotateResult)

    async def admin_set_retention(self, chat_id: int, days: int | None) -> RetentionOut:
        return await self._json(build_request(api.admin_set_retention, chat_id, days), RetentionOut)

    async def admin_run_retention(self) -> RetentionRun:
        return await self._json(api.admin_run_retention(), RetentionRun)
