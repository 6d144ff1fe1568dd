"""A fault injected into a real route of a live ``melo-server``: ``start_server(…, preload="tests.faults")``
imports this module into the server process before it starts.

``GET /v1/users/{FAULTY_USERNAME}`` then fails inside the account service with an exception no handler
knows, the way a bug would; every other username is looked up as usual.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from server.accounts import service
from server.db.models import User

FAULTY_USERNAME = "fault-injected"
FAULT_MESSAGE = "injected fault: secret-looking detail 7f3a"

_get_user = service.get_user


class InjectedFault(RuntimeError):
    pass


async def get_user(db: AsyncSession, username: str) -> User:
    if username == FAULTY_USERNAME:
        raise InjectedFault(FAULT_MESSAGE)
    return await _get_user(db, username)


service.get_user = get_user
