"""Bounded integers: the one range for every id, seq, cursor and offset a client sends.

Every integer column is a signed 64-bit BIGINT on SQLite, PostgreSQL and MariaDB. A number past that
names nothing stored, and handed to a database driver it is an error there (SQLite's ``OverflowError``,
asyncpg's ``DataError``), so it is refused at the boundary: 422 ``validation_error`` on REST, an
``error`` frame on the WebSocket. The bounds also show in ``/openapi.json`` as ``minimum``/``maximum``.
Limits keep their own, smaller ranges where they are declared (``le=``).
"""

from typing import Annotated

from pydantic import Field

INT64_MAX = 2**63 - 1

# A row id (chat, message, user, scheduled message, push subscription, to-device message): ids start at 1.
Id = Annotated[int, Field(ge=1, le=INT64_MAX)]
# A position: a per-chat seq, a resume cursor, "after this to-device id"; 0 is before the first.
Seq = Annotated[int, Field(ge=0, le=INT64_MAX)]
# Rows to skip in a listing: a position too.
Offset = Seq

__all__ = ["INT64_MAX", "Id", "Offset", "Seq"]
