"""The scheduler with an injectable clock: one leader across app instances, each job once per period,
and the jobs themselves (scheduled delivery, disappearing messages, retention, clean-up, key rotation)."""

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.engine import make_url

from server.config import JOB_NAMES, Settings
from server.db.models import Chat, ChatEvent, DeviceSession, Message, ServerState
from server.db.types import utcnow
from server.jobs.scheduler import Job, JobScheduler, default_jobs
from tests.conftest import Api, bearer, make_settings, open_api, wait_signing_with


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def two(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Api, Api]]:
    """Two app instances on one database (SQLite, PostgreSQL, MariaDB), their own schedulers off: the tests
    drive the ticks, so the lease's compare-and-swap is exercised on every backend."""
    s1 = make_settings(tmp_path / "a", db_url, jobs_enabled=False)
    s2 = make_settings(tmp_path / "b", db_url, jobs_enabled=False)
    async for a in open_api(s1, "a"):
        async for b in open_api(s2, "b"):
            async with a.state.sessions() as db:  # a clean slate for the lease and the period marks
                for row in (await db.scalars(select(ServerState).where(ServerState.key.like("jobs.%")))).all():
                    await db.delete(row)
                await db.commit()
            yield a, b
            async with a.state.sessions() as db:  # and no far-future lease left for later tests' apps
                await db.execute(delete(ServerState).where(ServerState.key.like("jobs.%")))
                await db.commit()


@pytest.fixture
async def one(db_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The app on each database backend with its scheduler off: the tests call the jobs themselves, so a
    background tick (real clock) never races them."""
    settings = make_settings(tmp_path, db_url, jobs_enabled=False)
    async for a in open_api(settings, make_url(db_url).get_backend_name()):
        yield a


async def test_one_leader_each_job_once_per_period(two: tuple[Api, Api]) -> None:
    a, b = two
    clock = FakeClock(utcnow() + timedelta(days=3650))
    ja, jb = JobScheduler(a.state, clock), JobScheduler(b.state, clock)
    await asyncio.gather(ja.tick(), jb.tick())
    names = {j.name for j in ja.jobs}
    assert set((ja.runs + jb.runs).keys()) == names
    assert all((ja.runs + jb.runs)[n] == 1 for n in names)
    assert [await ja.is_leader(), await jb.is_leader()].count(True) == 1
    # the same period again, on both: nothing runs twice
    await asyncio.gather(ja.tick(), jb.tick())
    assert all((ja.runs + jb.runs)[n] == 1 for n in names)
    # the leader stops; after its lease the other takes over and runs the next period's jobs
    leader, other = (ja, jb) if await ja.is_leader() else (jb, ja)
    await leader.release()
    clock.now += timedelta(hours=1, seconds=1)
    await other.tick()
    assert await other.is_leader()
    assert other.runs["retention"] + leader.runs["retention"] == 2
    # a live leader's lease keeps the other out
    before = dict(leader.runs)
    clock.now += timedelta(hours=1, seconds=1)
    await other.tick()  # renews its lease and runs the new period
    await leader.tick()
    assert dict(leader.runs) == before
    assert other.runs["retention"] + leader.runs["retention"] == 3


def test_job_periods_are_configurable_by_name(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jobs_tick_s=2, jobs_periods={"retention": 60, "key_rotation": 0.5})
    periods = {j.name: j.period_s for j in default_jobs(SimpleNamespace(settings=settings))}  # type: ignore[arg-type]
    assert periods == {"scheduled_messages": 2, "disappearing": 2, "retention": 60, "cleanup": 3600,
                       "key_rotation": 0.5}
    assert tuple(periods) == JOB_NAMES
    for bad in ({"retension": 60}, {"retention": 0}, {"cleanup": -1}):
        with pytest.raises(ValueError, match="jobs_periods"):
            Settings(data_dir=tmp_path, jobs_periods=bad)


async def test_a_changed_period_length_neither_repeats_nor_stalls_a_job(one: Api) -> None:
    """Period marks are period starts in seconds: after MELO_JOBS_PERIODS changes, a job that already ran
    in the current (longer) period waits for the next one, and never waits longer than that."""
    name = f"probe-{secrets.token_hex(4)}"  # its own period mark in the shared database
    ran: list[datetime] = []

    async def run(_: Any, now: datetime) -> None:
        ran.append(now)

    hour = datetime(2040, 1, 1, 10, tzinfo=UTC)
    clock = FakeClock(hour + timedelta(minutes=25))
    every_10_min = JobScheduler(one.state, clock, jobs=[Job(name, 600, run)])
    await every_10_min.tick()
    assert ran == [clock.now]
    await every_10_min.release()
    # the operator makes it hourly: this hour already had its run ...
    hourly = JobScheduler(one.state, clock, jobs=[Job(name, 3600, run)])
    clock.now = hour + timedelta(minutes=50)
    await hourly.tick()
    assert len(ran) == 1
    # ... and the next hour has one
    clock.now = hour + timedelta(minutes=61)
    await hourly.tick()
    await hourly.tick()
    assert ran[1:] == [hour + timedelta(minutes=61)]
    await hourly.release()
    # and back to every ten minutes: not again in the same ten minutes, then once in the next
    every_10_min = JobScheduler(one.state, clock, jobs=[Job(name, 600, run)])
    clock.now = hour + timedelta(minutes=65)
    await every_10_min.tick()
    assert len(ran) == 2
    clock.now = hour + timedelta(minutes=71)
    await every_10_min.tick()
    assert ran[2:] == [hour + timedelta(minutes=71)]
    await every_10_min.release()


async def test_scheduled_message_sent_once_through_the_send_path(two: tuple[Api, Api]) -> None:
    a, b = two
    owner = await a.register()
    chat = (await a.client.post("/v1/chats", json={"kind": "channel", "title": "later"},
                                headers=bearer(owner))).json()
    send_at = utcnow() + timedelta(hours=2)
    r = await a.client.post(f"/v1/chats/{chat['id']}/scheduled",
                            json={"txn_id": "s1", "text": "good morning", "send_at": send_at.isoformat()},
                            headers=bearer(owner))
    assert r.status_code == 201, r.text
    listed = (await a.client.get("/v1/scheduled", headers=bearer(owner))).json()["scheduled"]
    assert [s["text"] for s in listed] == ["good morning"]
    clock = FakeClock(utcnow() + timedelta(hours=1))
    ja, jb = JobScheduler(a.state, clock), JobScheduler(b.state, clock)
    await asyncio.gather(ja.tick(), jb.tick())
    page = (await a.client.get(f"/v1/chats/{chat['id']}/messages", headers=bearer(owner))).json()["messages"]
    assert page == []  # not yet
    clock.now = send_at + timedelta(seconds=1)
    await asyncio.gather(ja.tick(), jb.tick())
    await asyncio.gather(ja.tick(), jb.tick())
    page = (await a.client.get(f"/v1/chats/{chat['id']}/messages", headers=bearer(owner))).json()["messages"]
    assert [m["text"] for m in page] == ["good morning"]
    assert (await a.client.get("/v1/scheduled", headers=bearer(owner))).json()["scheduled"] == []


async def test_schedule_window_is_stated_and_text_limit_is_a_message_s(one: Api) -> None:
    owner = await one.register()
    chat = (await one.client.post("/v1/chats", json={"kind": "channel", "title": "window"},
                                  headers=bearer(owner))).json()
    path = f"/v1/chats/{chat['id']}/scheduled"

    async def schedule(txn: str, send_at: datetime, text: str = "hi") -> Any:
        return await one.client.post(path, json={"txn_id": txn, "text": text, "send_at": send_at.isoformat()},
                                     headers=bearer(owner))

    now = utcnow()
    for txn, at, problem in (("past", now - timedelta(minutes=1), "is in the past"),
                             ("far", now + timedelta(days=367), "is more than 366 days ahead")):
        r = await schedule(txn, at)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        latest = datetime.fromisoformat(err["details"]["latest"])
        assert err["code"] == "validation_error" and err["details"]["field"] == "send_at"
        assert timedelta(days=366) - timedelta(minutes=1) < latest - now <= timedelta(days=366, minutes=1)
        assert err["message"] == (f"send time {at:%Y-%m-%d %H:%M} UTC {problem}: pick a time after now and "
                                  f"before {latest:%Y-%m-%d %H:%M} UTC")
    assert (await schedule("edge", now + timedelta(days=365))).status_code == 201
    # the text limit of a message sent now (64 KiB), not a smaller one of its own
    assert (await schedule("long", now + timedelta(hours=1), "x" * 60_000)).status_code == 201
    r = await schedule("longer", now + timedelta(hours=1), "x" * 70_000)
    assert r.status_code == 422 and "message too long: 70,000 characters, at most 65,536" in r.text


async def test_disappearing_messages_are_tombstoned(one: Api) -> None:
    api = one
    owner = await api.register()
    chat = (await api.client.post("/v1/chats", json={"kind": "channel", "title": "poof"},
                                  headers=bearer(owner))).json()
    await api.client.post(f"/v1/chats/{chat['id']}/messages", json={"txn_id": "old", "text": "before timer"},
                          headers=bearer(owner))

    async def get_chat() -> dict:
        r = await api.client.get(f"/v1/chats/{chat['id']}", headers=bearer(owner))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    assert (await get_chat())["message_ttl_seconds"] is None
    r = await api.client.put(f"/v1/chats/{chat['id']}/timer", json={"seconds": 60}, headers=bearer(owner))
    assert r.status_code == 200 and r.json()["seconds"] == 60
    # the chat itself shows its timer, alone and in the list
    assert (await get_chat())["message_ttl_seconds"] == 60
    listed = (await api.client.get("/v1/chats", headers=bearer(owner))).json()["chats"]
    assert [c["message_ttl_seconds"] for c in listed if c["id"] == chat["id"]] == [60]
    r = await api.client.post(f"/v1/chats/{chat['id']}/messages", json={"txn_id": "new", "text": "vanishing"},
                              headers=bearer(owner))
    gone_id = r.json()["id"]
    from server.jobs import tasks

    # (other tests' chats may share this database: look at this chat's count only)
    assert str(chat["id"]) not in await tasks.expire_disappearing(api.state, utcnow() + timedelta(seconds=30))
    assert (await tasks.expire_disappearing(api.state, utcnow() + timedelta(seconds=61)))[str(chat["id"])] == 1
    page = (await api.client.get(f"/v1/chats/{chat['id']}/messages", headers=bearer(owner))).json()["messages"]
    by_id = {m["id"]: m for m in page}
    assert by_id[gone_id]["deleted"] is True and by_id[gone_id]["text"] is None
    assert any(m["text"] == "before timer" for m in page)
    async with api.state.sessions() as db:
        ev = await db.scalar(select(ChatEvent).where(ChatEvent.chat_id == chat["id"], ChatEvent.type ==
                                                     "message.deleted"))
        assert ev is not None and ev.message_id == gone_id
    # turning the timer off clears it on the chat, and messages sent from then on stay
    r = await api.client.put(f"/v1/chats/{chat['id']}/timer", json={"seconds": None}, headers=bearer(owner))
    assert r.status_code == 200 and r.json()["seconds"] is None
    assert (await get_chat())["message_ttl_seconds"] is None
    r = await api.client.post(f"/v1/chats/{chat['id']}/messages", json={"txn_id": "kept", "text": "stays"},
                              headers=bearer(owner))
    assert r.status_code == 201, r.text
    assert str(chat["id"]) not in await tasks.expire_disappearing(api.state, utcnow() + timedelta(days=400))
    page = (await api.client.get(f"/v1/chats/{chat['id']}/messages", headers=bearer(owner))).json()["messages"]
    assert [m["text"] for m in page if not m["deleted"]] == ["before timer", "stays"]


async def test_retention_purges_and_raises_purged_seq(one: Api) -> None:
    api = one
    admin = await api.make_admin()
    chat = (await api.client.post("/v1/chats", json={"kind": "channel", "title": "forget"},
                                  headers=bearer(admin))).json()
    for i in range(3):
        await api.client.post(f"/v1/chats/{chat['id']}/messages", json={"txn_id": f"r{i}", "text": f"m{i}"},
                              headers=bearer(admin))
    async with api.state.sessions() as db:  # the first two messages (and their events) are ten days old
        old = (await db.scalars(select(Message).where(Message.chat_id == chat["id"]).order_by(Message.seq))).all()
        cut = old[1].seq
        await db.execute(update(ChatEvent).where(ChatEvent.chat_id == chat["id"], ChatEvent.seq <= cut)
                         .values(created_at=utcnow() - timedelta(days=10)))
        await db.commit()
    r = await api.client.put(f"/v1/admin/chats/{chat['id']}/retention", json={"days": 7}, headers=bearer(admin))
    assert r.status_code == 200 and r.json()["days"] == 7
    r = await api.client.post("/v1/admin/retention/run", headers=bearer(admin))
    assert r.status_code == 200 and r.json()["purged"][str(chat["id"])] == 2
    page = (await api.client.get(f"/v1/chats/{chat['id']}/messages", headers=bearer(admin))).json()["messages"]
    assert [m["text"] for m in page] == ["m2"]
    async with api.state.sessions() as db:
        assert (await db.get(Chat, chat["id"])).purged_seq == cut


async def test_cleanup_and_key_rotation(one: Api) -> None:
    api = one
    from server.jobs import tasks

    user = await api.register()
    later = utcnow() + timedelta(days=api.state.settings.session_idle_days + 1)
    async with api.state.sessions() as db:
        await db.execute(update(DeviceSession).where(DeviceSession.user_id == user["user"]["id"])
                         .values(last_seen_at=utcnow()))
        await db.commit()
    out = await tasks.cleanup(api.state, later)
    assert out["idle_sessions"] >= 1
    r = await api.client.get("/v1/sessions", headers=bearer(user))
    assert r.status_code == 401  # the idle session was revoked
    jwt_before, data_before = api.state.keys.active_kid, api.state.data_keys.active_kid
    assert await tasks.rotate_keys(api.state, utcnow()) == {}
    rotated = await tasks.rotate_keys(api.state, utcnow() + timedelta(days=31))
    assert set(rotated) == {"jwt", "data"}
    assert api.state.data_keys.active_kid != data_before
    assert rotated["jwt"] != jwt_before and rotated["jwt"] in {k["kid"] for k in (await api.state.keys.jwks())["keys"]}
    await wait_signing_with(api, rotated["jwt"])
    await api.state.data_keys.wait_reencrypted()
    assert await api.state.data_keys.count_on_old_keys() == 0


async def test_stop_waits_for_a_running_tick_and_cancels_one_that_hangs(
    one: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """At shutdown no tick outlives the scheduler (nor, so, the database engine disposed right after)."""
    from server.jobs import scheduler as scheduler_module

    clock = FakeClock(utcnow() + timedelta(days=20000))  # past any lease another test left behind
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[datetime] = []

    async def slow(_: Any, now: datetime) -> None:
        started.set()
        await release.wait()
        finished.append(now)

    jobs = JobScheduler(one.state, clock, jobs=[Job(f"slow-{secrets.token_hex(4)}", 600, slow)])
    jobs.start()
    async with asyncio.timeout(15):
        await started.wait()
    stopping = asyncio.create_task(jobs.stop())
    done, _ = await asyncio.wait({stopping}, timeout=0.3)
    assert not done  # stop() waits for the job in flight ...
    release.set()
    async with asyncio.timeout(15):
        await stopping
    assert finished == [clock.now]  # ... which finished, not cancelled

    monkeypatch.setattr(scheduler_module, "STOP_GRACE_S", 0.2)
    jobs_log = logging.getLogger("melo.jobs")  # "melo" does not propagate to the root logger caplog reads
    level = jobs_log.level
    jobs_log.addHandler(caplog.handler)
    jobs_log.setLevel(logging.INFO)  # setLevel, not the attribute: it also clears the loggers' level cache
    try:
        started.clear()
        release.clear()
        hangs = JobScheduler(one.state, clock, jobs=[Job(f"hangs-{secrets.token_hex(4)}", 600, slow)])
        hangs.start()
        async with asyncio.timeout(15):
            await started.wait()
        tick = hangs._ticking
        assert tick is not None
        async with asyncio.timeout(15):
            await hangs.stop()
    finally:
        jobs_log.removeHandler(caplog.handler)
        jobs_log.setLevel(level)
    # past the grace period it was cancelled, and stop() waited for it to end; a shutdown, not a failed job
    assert tick.done() and finished == [clock.now]
    assert "scheduler tick cancelled at shutdown" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text  # APScheduler is quiet
