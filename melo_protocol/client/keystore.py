"""The 32-byte key that encrypts a profile's local E2E store, kept in the OS keyring.

Where the machine has no keyring backend (or MELO_KEYRING=file), it lives in a 0600 file beside the
credentials, with the same one-time warning the credential store gives.
"""

import base64
import secrets
from pathlib import Path

from melo_protocol.client.tokens import CredentialStore, _write_private

SERVICE = "melo-store"


def _file(store: CredentialStore, device_id: str) -> Path:
    return store.home / "credentials" / f"{store.profile}.{device_id}.storekey"


def load_or_create_store_key(store: CredentialStore, device_id: str) -> bytes:
    """The store key of this profile's device; made on first use."""
    name = f"{store.profile}:{device_id}"
    if store.uses_keyring():
        import keyring

        value = keyring.get_password(SERVICE, name)
        if value is None:
            value = base64.b64encode(secrets.token_bytes(32)).decode()
            keyring.set_password(SERVICE, name, value)
        return base64.b64decode(value)
    path = _file(store, device_id)
    if not path.exists():
        _write_private(path, base64.b64encode(secrets.token_bytes(32)).decode())
    return base64.b64decode(path.read_text().strip())
