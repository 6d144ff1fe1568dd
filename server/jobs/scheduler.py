"""The background scheduler: APScheduler ticks every worker, one leader (a database lease) does the work.

Every ``jobs_tick_s`` each worker's AsyncIOScheduler calls ``tick``. A tick first takes or renews the
leader lease: a row in ``server_state`` holding "<owner>|<expiry>", changed only by compare-and-swap,
so at most one worker holds it at a time; a crashed leader's lease lapses after ``jobs_lease_s``.
The leader then runs each job whose period has come round. A job's last period is itself recorded by
compare-and-swap (``jobs.last.<name>``, the period's start as a Unix time, so a changed period length
compares correctly), so even a leader change mid-period runs each job exactly once per period. Each run
is logged at debug level ("job ran", with job and period) and counted (``melo_job_runs_total``). Time comes from an
injectable clock, so tests move time instead of waiting for it.
"""

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from server.core.background import finish
from server.db.models import ServerState
from server.db.types import utcnow
from server.jobs import tasks
from server.state import AppState

log = logging.getLogger("melo.jobs")

Clock = Callable[[], datetime]
LEASE_KEY = "jobs.leader"
LAST_RUN_PREFIX = "jobs.last."
STOP_GRACE_S = 10.0  # at shutdown a running tick may finish its jobs before it is cancelled


@dataclass(frozen=True)
class Job:
    name: str
    period_s: float
    run: Callable[[AppState, datetime], Awaitable[Any]]


def default_jobs(state: AppState) -> list[Job]:
    tick = state.settings.jobs_tick_s
    periods = state.settings.jobs_periods  # MELO_JOBS_PERIODS overrides, by name
    jobs = [
        Job("scheduled_messages", tick, tasks.send_scheduled),
        Job("disappearing", tick, tasks.expire_disappearing),
        Job("retention", 3600, tasks.retention),
        Job("cleanup", 3600, tasks.cleanup),
        Job("key_rotation", 86400, tasks.rotate_keys),  # rotates when the active keys are a month old
    ]
    return [Job(j.name, periods.get(j.name, j.period_s), j.run) for j in jobs]


class JobScheduler:
    def __init__(self, state: AppState, clock: Clock = utcnow, jobs: list[Job] | None = None) -> None:
        self.state = state
        self.clock = clock
        self.jobs = jobs if jobs is not None else default_jobs(state)
        self.owner = secrets.token_hex(8)
        self.runs: Counter[str] = Counter()  # jobs this instance ran (tests and metrics)
        self._scheduler: AsyncIOScheduler | None = None
        self._ticking: asyncio.Task[Any] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_job(self._scheduled_tick, "interval", seconds=self.state.settings.jobs_tick_s,
                                id="melo-tick", max_instances=1, coalesce=True, misfire_grace_time=None,
                                next_run_time=utcnow())
        self._scheduler.start()

    async def stop(self) -> None:
        """No new ticks; a running one finishes (or is cancelled after ``STOP_GRACE_S``) before we return,
        so it never outlives the database engine."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.pause()
            await finish([self._ticking], what="scheduler tick", grace=STOP_GRACE_S)
            self._scheduler.shutdown(wait=False)
        self._scheduler = None
        await self.release()
        self._set_leader_metric(False)

    # -- one tick --------------------------------------------------------------------------------------
    async def _scheduled_tick(self) -> None:
        self._ticking = asyncio.current_task()
        try:
            await self.tick()
        except asyncio.CancelledError:
            # only stop() cancels a tick, past its grace period; the job runs again next period. Ending
            # here keeps APScheduler from logging the shutdown as a failed job.
            log.info("scheduler tick cancelled at shutdown")
        finally:
            self._ticking = None

    async def tick(self) -> dict[str, Any]:
        """Take or renew the lease; as leader, run every job whose period is due. Returns their results."""
        now = self.clock()
        results: dict[str, Any] = {}
        try:
            leading = await self.acquire(now)
            self._set_leader_metric(leading)
            if not leading:
                return results
            for job in self.jobs:
                period = await self._claim_period(job, now)
                if period is None:
                    continue
                try:
                    results[job.name] = await job.run(self.state, now)
                    self.runs[job.name] += 1
                    self._count(job.name, "ok")
                    # debug: the frequent jobs run every few seconds; the metric counts them at any level
                    log.debug("job ran", extra={"job": job.name, "period": period, "owner": self.owner})
                except Exception:
                    self._count(job.name, "error")
                    log.exception("job %s failed; it runs again next period", job.name,
                                  extra={"job": job.name, "period": period, "owner": self.owner})
        except Exception:
            log.exception("scheduler tick failed")
        return results

    def _count(self, job: str, outcome: str) -> None:
        metrics = self.state.metrics
        if metrics is not None:
            metrics.job_runs.labels(job, outcome).inc()

    def _set_leader_metric(self, leading: bool) -> None:
        metrics = self.state.metrics
        if metrics is not None:
            metrics.jobs_leader.set(1 if leading else 0)

    async def _cas(self, key: str, old: str | None, new: str) -> bool:
        """Set server_state[key] from ``old`` (None: absent) to ``new``; True if this call made the change."""
        async with self.state.sessions() as db:
            if old is None:
                db.add(ServerState(key=key, value=new))
                try:
                    await db.commit()
                    return True
                except IntegrityError:
                    await db.rollback()
                    return False
            done = await db.execute(update(ServerState).where(ServerState.key == key, ServerState.value == old)
                                    .values(value=new))
            await db.commit()
            return int(done.rowcount) == 1  # type: ignore[attr-defined]

    async def _read(self, key: str) -> str | None:
        async with self.state.sessions() as db:
            row = await db.get(ServerState, key)
            return row.value if row is not None else None

    async def acquire(self, now: datetime) -> bool:
        """Take the lease if it is free or lapsed, renew it if ours; True while this instance leads."""
        current = await self._read(LEASE_KEY)
        if current is not None:
            holder, _, expiry = current.partition("|")
            if holder != self.owner and float(expiry or 0) > now.timestamp():
                return False
        return await self._cas(LEASE_KEY, current, f"{self.owner}|{now.timestamp() + self.state.settings.jobs_lease_s}")

    async def is_leader(self, now: datetime | None = None) -> bool:
        current = await self._read(LEASE_KEY)
        if current is None:
            return False
        holder, _, expiry = current.partition("|")
        return holder == self.owner and float(expiry or 0) > (now or self.clock()).timestamp()

    async def release(self) -> None:
        """Give the lease up at shutdown so another worker takes over at its next tick."""
        try:
            current = await self._read(LEASE_KEY)
            if current is not None and current.partition("|")[0] == self.owner:
                await self._cas(LEASE_KEY, current, f"{self.owner}|0")
        except Exception:
            log.warning("could not release the scheduler lease; it lapses by itself")

    async def _claim_period(self, job: Job, now: datetime) -> str | None:
        """Claim the job's current period (its start, as Unix time); None when it already ran or another
        worker claimed it first. Starts, not period numbers, are stored: they stay comparable when an
        operator changes the job's period."""
        start = (now.timestamp() // job.period_s) * job.period_s
        key = LAST_RUN_PREFIX + job.name
        current = await self._read(key)
        if current is not None:
            try:
                if float(current) >= start:
                    return None
            except ValueError:
                log.warning("unreadable %s=%r: claiming the period anew", key, current)
        claimed = repr(start)  # exact: every worker computes the same float for the same period
        return claimed if await self._cas(key, current, claimed) else None

    async def run_now(self, name: str) -> Any:
        """Run one job at once, outside its schedule (the admin's "run retention now")."""
        job = next(j for j in self.jobs if j.name == name)
        result = await job.run(self.state, self.clock())
        self.runs[name] += 1
        self._count(name, "ok")
        return result
