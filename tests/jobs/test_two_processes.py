"""Two real ``melo-server run`` processes on one database (and Redis): each job runs exactly once per period.

The servers tick every 0.2 s and run the hourly and daily jobs every second (MELO_JOBS_TICK_S,
MELO_JOBS_PERIODS), so many periods pass in a few seconds of real time. Every run is logged as "job ran"
with its job and period: across both processes' logs no (job, period) appears twice, also across a
leader change. A scheduled message is delivered exactly once, before and after the leader stops.
"""

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import create_async_engine

from server.config import JOB_NAMES
from server.db.models import ServerState
from server.db.types import utcnow
from tests.conftest import RUN_ID, RUN_SECRET
from tests.live import LiveServer, running_server, stop_server
from tests.server.realtime.test_cluster import Node, User, call, register

TIMEOUT_S = 30.0
FAST_JOBS = {"retention": 1, "cleanup": 1, "key_rotation": 1}


async def _clear_job_state(url: str) -> None:
    """Forget the lease and the period marks other tests' apps left in the shared database."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(delete(ServerState).where(ServerState.key.like("jobs.%")))
    finally:
        await engine.dispose()


@pytest.fixture(params=["postgres", "mysql"])
def job_nodes(request: pytest.FixtureRequest, databases: Any, redis_url: str,
              tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    url = databases.url(request.param)
    asyncio.run(_clear_job_state(url))
    env = {
        "MELO_DATABASE_URL": url,
        "MELO_REDIS_URL": redis_url,
        "MELO_REDIS_PREFIX": f"melotest:{RUN_ID}:jobs-{request.param}:",
        "MELO_SECRET_KEY": RUN_SECRET,
        "MELO_MIGRATE_ON_START": "false",
        "MELO_JOBS_TICK_S": "0.2",
        "MELO_JOBS_LEASE_S": "5",
        "MELO_JOBS_PERIODS": json.dumps(FAST_JOBS),
        "MELO_LOG_LEVEL": "debug",  # the "job ran" lines
    }
    try:
        with running_server(tmp_path / "a", env) as a, running_server(tmp_path / "b", env) as b:
            yield Node(a), Node(b)
    finally:
        # 1-second periods stored as marks would keep other tests' hourly jobs waiting for no reason
        asyncio.run(_clear_job_state(url))


async def metrics(node: Node) -> dict[str, float]:
    """This node's job figures: "runs:<job>" (successful runs) and "leader"."""
    async with httpx.AsyncClient(base_url=node.server.url) as http:
        r = await http.get("/metrics")
    assert r.status_code == 200
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if sample.name == "melo_job_runs_total" and sample.labels.get("outcome") == "ok":
                out[f"runs:{sample.labels['job']}"] = sample.value
            elif sample.name == "melo_jobs_leader":
                out["leader"] = sample.value
    return out


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = TIMEOUT_S) -> None:
    """Poll a condition until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        await asyncio.sleep(0.1)


async def texts(node: Node, user: User, chat: int) -> list[str]:
    page = await call(node, user, "GET", f"/v1/chats/{chat}/messages", 200)
    return [m["text"] for m in page["messages"]]


async def schedule(node: Node, user: User, chat: int, txn_id: str, text: str) -> None:
    send_at = utcnow() + timedelta(seconds=1)
    await call(node, user, "POST", f"/v1/chats/{chat}/scheduled", 201,
               json={"txn_id": txn_id, "text": text, "send_at": send_at.isoformat()})


async def wait_for_more_runs(nodes: list[Node], job: str, more: int) -> None:
    """Wait until ``job`` has run ``more`` more times in total on ``nodes`` (that many periods passed)."""
    async def total() -> float:
        return sum([(await metrics(n)).get(f"runs:{job}", 0.0) for n in nodes])

    start = await total()

    async def grown() -> bool:
        return await total() >= start + more

    await eventually(grown, f"{more} more {job} runs")


def job_runs(server: LiveServer) -> list[tuple[str, str]]:
    runs = []
    for line in server.log().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # uvicorn's plain start-up lines
        if isinstance(record, dict) and record.get("msg") == "job ran":
            runs.append((record["job"], record["period"]))
    return runs


async def test_each_job_runs_exactly_once_per_period_across_two_processes(job_nodes: tuple[Node, Node]) -> None:
    a, b = job_nodes
    nodes = [a, b]
    owner = await register(a, "sched")
    chat = (await call(a, owner, "POST", "/v1/chats", 201, json={"kind": "channel", "title": "once"}))["id"]

    # exactly one of the two leads
    async def one_leader() -> bool:
        return sorted([(await metrics(n)).get("leader", 0.0) for n in nodes]) == [0.0, 1.0]

    await eventually(one_leader, "exactly one leader")
    leader, other = (a, b) if (await metrics(a)).get("leader") == 1.0 else (b, a)

    # a message scheduled on one node is sent once, whichever node leads; later periods do not resend it
    await schedule(a, owner, chat, "s1", "first")

    async def first_sent() -> bool:
        return await texts(b, owner, chat) == ["first"]

    await eventually(first_sent, "the scheduled message in the chat")
    await wait_for_more_runs(nodes, "scheduled_messages", 5)
    await wait_for_more_runs(nodes, "retention", 2)
    assert await texts(a, owner, chat) == ["first"]
    assert await call(a, owner, "GET", "/v1/scheduled", 200) == {"scheduled": []}

    # the leader stops (releasing its lease); the other takes over and the jobs go on, still once each
    await schedule(other, owner, chat, "s2", "second")
    stop_server(leader.server)

    async def took_over() -> bool:
        return (await metrics(other)).get("leader") == 1.0

    await eventually(took_over, "the other node taking the lease")

    async def second_sent() -> bool:
        return await texts(other, owner, chat) == ["first", "second"]

    await eventually(second_sent, "the second scheduled message in the chat")
    for job in JOB_NAMES:
        await wait_for_more_runs([other], job, 2)
    assert await texts(other, owner, chat) == ["first", "second"]
    stop_server(other.server)

    # every run of every job, on both processes: each (job, period) once, and both processes ran jobs
    first_runs, second_runs = job_runs(leader.server), job_runs(other.server)
    assert first_runs and second_runs
    assert {job for job, _ in first_runs} == set(JOB_NAMES)
    assert {job for job, _ in second_runs} == set(JOB_NAMES)
    repeated = {run: n for run, n in Counter(first_runs + second_runs).items() if n > 1}
    assert repeated == {}, f"jobs ran more than once in a period: {repeated}"
    per_job = Counter(job for job, _ in first_runs + second_runs)
    assert all(per_job[job] >= 3 for job in JOB_NAMES), per_job
