"""Stopping this worker's background tasks before its database engine goes.

A task cancelled in the middle of a database call unwinds through the driver; left to unwind after the
engine is disposed and the event loop is closing, SQLAlchemy's aiosqlite adapter can wait forever on a
connection thread that is already gone. So shutdown lets each task finish (or cancels it) and waits for
it, with a bound, before the engine is disposed.
"""

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger("melo.background")


async def finish(tasks: Iterable["asyncio.Task[object] | asyncio.Future[object] | None"], *, what: str,
                 grace: float = 0.0, unwind: float = 3.0) -> None:
    """Give ``tasks`` ``grace`` seconds to end by themselves, cancel the rest, and wait up to ``unwind``
    seconds for them to stop. Never raises: a task that will not stop is logged and left."""
    pending = {t for t in tasks if t is not None and not t.done()}
    if pending and grace > 0:
        _, pending = await asyncio.wait(pending, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=unwind)
        if stuck:
            log.warning("%d %s task(s) did not stop in time", len(stuck), what)
