"""This device on the REST client: its E2E keys, to-device messages, web push and the ICE servers for calls."""

from typing import Any

from melo_protocol.client import api
from melo_protocol.client.transport import RestTransport, build_request
from melo_protocol.wire.calls import IceServers
from melo_protocol.wire.jobs import PushSubscriptionList, PushSubscriptionOut, VapidKeyOut
from melo_protocol.wire.keys import KeyCounts, KeysClaimResult, KeysQueryResult, ToDeviceList, ToDeviceOut


class DevicesApi(RestTransport):
    """What belongs to this device rather than to the account: keys, to-device queue, push, ICE."""

    # -- keys and to-device ------------------------------------------------------------------

    async def keys_upload(
        self,
        device_keys: dict[str, Any] | None = None,
        one_time_keys: dict[str, Any] | None = None,
        fallback_key: dict[str, Any] | None = None,
    ) -> KeyCounts:
        return await self._json(build_request(api.keys_upload, device_keys, one_time_keys, fallback_key), KeyCounts)

    async def keys_count(self) -> KeyCounts:
        return await self._json(api.keys_count(), KeyCounts)

    async def keys_query(self, users: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        return (await self._json(build_request(api.keys_query, users), KeysQueryResult)).devices

    async def keys_claim(self, devices: dict[str, list[str]]) -> KeysClaimResult:
        return await self._json(build_request(api.keys_claim, devices), KeysClaimResult)

    async def send_to_device(self, type_: str, messages: dict[str, dict[str, dict[str, Any]]]) -> int:
        return int((await self._request(build_request(api.send_to_device, type_, messages))).json()["queued"])

    async def list_to_device(self, after: int = 0, limit: int = 100) -> list[ToDeviceOut]:
        return (await self._json(api.list_to_device(after, limit), ToDeviceList)).messages

    async def ack_to_device(self, ids: list[int]) -> int:
        """Forget exactly these processed to-device messages (a lower id that arrived late stays queued)."""
        return int((await self._request(build_request(api.ack_to_device, ids))).json()["removed"])

    # -- web push ----------------------------------------------------------------------------

    async def push_vapid(self) -> VapidKeyOut:
        return await self._json(api.push_vapid(), VapidKeyOut)

    async def push_subscribe(
        self, endpoint: str, p256dh: str, auth: str, include_sender: bool = False
    ) -> PushSubscriptionOut:
        """Subscribe this device (a second call with the same endpoint updates it)."""
        return await self._json(
            build_request(api.push_subscribe, endpoint, p256dh, auth, include_sender), PushSubscriptionOut
        )

    async def push_list(self) -> list[PushSubscriptionOut]:
        return (await self._json(api.push_list(), PushSubscriptionList)).subscriptions

    async def push_unsubscribe(self, subscription_id: int) -> None:
        await self._request(api.push_unsubscribe(subscription_id))

    # -- calls -------------------------------------------------------------------------------

    async def ice_servers(self) -> IceServers:
        """STUN and TURN servers for calls; TURN credentials expire after ``ttl_seconds``."""
        return await self._json(api.ice_servers(), IceServers)
