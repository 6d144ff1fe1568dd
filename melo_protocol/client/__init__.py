"""The client SDK: the only network I/O of melo_cli and melo_tui.

``MeloClient`` speaks REST and keeps the session's tokens fresh; ``CredentialStore`` keeps them
between runs; every failure is a ``MeloError`` subclass.
"""

from melo_protocol.client.errors import (
    ApiError,
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    InvalidCredentials,
    MeloError,
    NotAuthenticated,
    NotFound,
    NotLoggedIn,
    RateLimited,
    ServerUnreachable,
    SessionRevoked,
)
from melo_protocol.client.rest import MeloClient
from melo_protocol.client.tokens import Credentials, CredentialStore, default_home

__all__ = [
    "ApiError",
    "BadRequest",
    "ClientError",
    "Conflict",
    "CredentialStore",
    "Credentials",
    "Forbidden",
    "InvalidCredentials",
    "MeloClient",
    "MeloError",
    "NotAuthenticated",
    "NotFound",
    "NotLoggedIn",
    "RateLimited",
    "ServerUnreachable",
    "SessionRevoked",
    "default_home",
]
