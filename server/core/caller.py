"""Who is asking: a user and the claims of their access token (REST), or of their socket's session."""

from dataclasses import dataclass

from server.core.jwt_keys import AccessClaims
from server.db.models import User


@dataclass
class Caller:
    user: User
    claims: AccessClaims

    @property
    def session_id(self) -> str:
        return self.claims.session_id
