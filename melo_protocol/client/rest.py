"""``MeloClient``: the async REST client, one method per server endpoint.

``async with MeloClient(url, store=CredentialStore(home, profile)) as client: await client.whoami()``.

It is put together from one resource group per module, each a small class over the one HTTP transport
(``transport.RestTransport``: credentials, token refresh, rate-limit waits, errors): accounts and
sessions (``rest_accounts``), chats and messages (``rest_chats``), administration (``rest_admin``) and
this device's keys, to-device messages, push and ICE servers (``rest_devices``). Every group sits
directly on the transport, so none depends on another and callers see one flat client.
"""

from melo_protocol.client.rest_accounts import AccountsApi
from melo_protocol.client.rest_admin import AdminApi
from melo_protocol.client.rest_chats import ChatsApi
from melo_protocol.client.rest_devices import DevicesApi


class MeloClient(AccountsApi, ChatsApi, AdminApi, DevicesApi):
    """One user's connection to one Melo server.

    Without ``server_url`` the store's server is used. Credentials for a different server than
    ``server_url`` are not used (a token is never sent to a server that did not issue it).
    """


__all__ = ["MeloClient"]
