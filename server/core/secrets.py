"""The server secret: seals private key material stored in the database (AES-256-GCM).

It comes from MELO_SECRET_KEY (base64 of 32 bytes; every host of a cluster sets the same), or on an
embedded install from ``secret.key`` in the data dir, created 0600 on first start.
"""

import base64
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the server secret must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: bytes) -> str:
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, plaintext, context)).decode()

    def open(self, sealed: str, context: bytes) -> bytes:
        raw = base64.b64decode(sealed)
        return self._aead.decrypt(raw[:12], raw[12:], context)


def load_secret(data_dir: Path, value: str | None = None) -> bytes:
    if value:
        key = base64.b64decode(value)
        if len(key) != 32:
            raise ValueError("MELO_SECRET_KEY must be base64 of exactly 32 bytes")
        return key
    path = data_dir / "secret.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, base64.b64encode(secrets.token_bytes(32)))
        except FileExistsError:
            pass  # another worker made it first
        finally:
            if fd is not None:
                os.close(fd)
    key = base64.b64decode(path.read_bytes().strip())
    if len(key) != 32:
        raise ValueError(f"{path} does not hold a 32-byte key")
    return key


def shareable_code(nbytes: int) -> str:
    """A URL-safe random code that people paste into commands: never starts with '-', which a
    command line would read as an option."""
    while True:
        code = secrets.token_urlsafe(nbytes)
        if not code.startswith("-"):
            return code
