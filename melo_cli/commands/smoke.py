"""``melo smoke``: an end-to-end check of a deployment with two throwaway users, for CI.

Everything runs in a temporary directory with the file credential store: the user's own profiles and
keyring are never read or written. Each step has a timeout, so a broken server fails a step instead of
hanging the pipeline.

Clean-up: with an admin access token in MELO_ADMIN_TOKEN the two users are deactivated; without one
they cannot be removed (deleting an account needs an admin), so both are logged out and the result
names them under "remaining_users".
"""

import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.errors import ExitCode
from melo_cli.options import JsonOpt

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.client.messenger import Messenger

STEPS = ("register", "login", "open_streams", "dm_a_to_b", "dm_b_to_a", "read_receipt", "edit", "reaction",
         "history", "revoke_closes_stream", "cleanup")


@dataclass
class StepResult:
    name: str
    status: str = "not_run"  # passed, failed, not_run
    duration_ms: int = 0
    detail: str = ""


@dataclass
class SmokeRun:
    server: str
    work: Path
    step_timeout: float
    progress: Callable[[str, str, str], None]
    pause_after: str | None = None
    registration_token: str | None = None
    admin_token: str | None = None
    results: list[StepResult] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    remaining_users: list[str] = field(default_factory=list)
    clients: dict[str, "MeloClient"] = field(default_factory=dict)
    messengers: dict[str, "Messenger"] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def store(self, profile: str) -> Any:
        from melo_protocol.client import CredentialStore

        return CredentialStore(self.work, profile, warn=lambda _msg: None)

    def client(self, profile: str, store: bool = True) -> "MeloClient":
        from melo_protocol import __version__
        from melo_protocol.client import MeloClient

        client = MeloClient(self.server, store=self.store(profile) if store else None,
                            user_agent=f"melo-smoke/{__version__}")
        self.clients[profile] = client
        return client

    async def step(self, name: str, action: Callable[[], Awaitable[str | None]]) -> bool:
        result = StepResult(name)
        self.results.append(result)
        self.progress(name, "started", "")
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.step_timeout):
                result.detail = await action() or ""
            result.status = "passed"
        except TimeoutError:
            result.status, result.detail = "failed", f"timed out after {self.step_timeout:g} s"
        except Exception as exc:  # any failure fails the step; the run goes on to clean up
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            result.status, result.detail = "failed", f"{type(exc).__name__}: {message}"
        result.duration_ms = int((time.monotonic() - started) * 1000)
        self.progress(name, result.status, result.detail)
        if result.status == "passed" and name == self.pause_after:
            self.progress(name, "paused", "press Enter to continue")
            await asyncio.to_thread(sys.stdin.readline)
        return result.status == "passed"


async def _next_event(m: "Messenger", kind: type, pred: Callable[[Any], bool]) -> Any:
    async for event in m.events():
        if isinstance(event, kind) and pred(event):
            return event
    raise AssertionError(f"the stream ended before a {kind.__name__} arrived")


async def _admin_client(run: SmokeRun) -> "MeloClient":
    from melo_protocol.client import Credentials

    store = run.store("admin")
    store.save(Credentials(server_url=run.server, username="", session_id="", device_id="", refresh_token="",
                           access_token=run.admin_token or "", access_expires_at=time.time() + 3600))
    return run.client("admin")


async def _smoke(run: SmokeRun) -> None:
    from melo_protocol.client import events as ev
    from melo_protocol.client.errors import SessionRevoked
    from melo_protocol.client.messenger import Messenger

    suffix = secrets.token_hex(4)
    names = {"a": f"smoke_{suffix}_a", "b": f"smoke_{suffix}_b"}
    password = secrets.token_urlsafe(18)

    async def register() -> str:
        token = run.registration_token
        how = "open registration"
        if token is None and run.admin_token:
            admin = await _admin_client(run)
            token = (await admin.admin_create_token(expires_in_seconds=3600, max_uses=2)).token
            how = "a registration token made with MELO_ADMIN_TOKEN"
        elif token is not None:
            how = "--registration-token"
        for key, name in names.items():
            client = run.client(f"reg-{key}")
            await client.register(name, password, registration_token=token, device_name="melo smoke")
            run.users.append(name)
            await client.logout()  # the login step makes the session the rest uses
        return f"{', '.join(names.values())} via {how}"

    async def login() -> None:
        for key, name in names.items():
            await run.client(key).login(name, password, device_name="melo smoke")

    async def open_streams() -> None:
        for key in names:
            m = Messenger.open(run.clients[key], run.store(key))
            await m.start(live=True)
            run.messengers[key] = m

    async def dm(sender: str, receiver: str, text: str) -> str:
        ms, mr = run.messengers[sender], run.messengers[receiver]
        if "chat_id" not in run.state:
            run.state["chat_id"] = (await ms.client.create_direct(names[receiver])).id
        chat_id = run.state["chat_id"]
        sent = await ms.send_text(chat_id, text)
        got = await _next_event(mr, ev.MessageReceived, lambda e: e.message is not None and e.message.id == sent.id)
        if got.message.status != "ok" or got.message.text != text:
            raise AssertionError(f"received {got.message.status!r} {got.message.text!r}, not the sent text")
        run.state[f"message_{sender}"] = sent
        return f"message {sent.id} decrypted by {names[receiver]}"

    async def read_receipt() -> None:
        sent = run.state["message_a"]
        await run.messengers["b"].mark_read(run.state["chat_id"], run.state["message_b"].seq)
        await _next_event(run.messengers["a"], ev.ReceiptUpdated,
                          lambda e: e.user == names["b"] and e.read_seq >= sent.seq)

    async def edit() -> None:
        sent = run.state["message_a"]
        await run.messengers["a"].edit_text(run.state["chat_id"], sent.id, "hello, edited")
        got = await _next_event(run.messengers["b"], ev.MessageEdited,
                                lambda e: e.message is not None and e.message.id == sent.id)
        if got.message.text != "hello, edited":
            raise AssertionError(f"the edit arrived as {got.message.status!r} {got.message.text!r}")

    async def reaction() -> None:
        sent = run.state["message_a"]
        await run.messengers["b"].react(run.state["chat_id"], sent.id, "👍")
        await _next_event(run.messengers["a"], ev.ReactionChanged,
                          lambda e: e.message_id == sent.id and e.emoji == "👍" and e.added)

    async def history() -> str:
        messages = await run.messengers["b"].history(run.state["chat_id"], limit=10)
        texts = {msg.id: msg.text for msg in messages}
        want = {run.state["message_a"].id: "hello, edited", run.state["message_b"].id: "hello back"}
        for message_id, text in want.items():
            if texts.get(message_id) != text:
                raise AssertionError(f"history shows message {message_id} as {texts.get(message_id)!r}")
        return f"{len(messages)} messages, decrypted"

    async def revoke_closes_stream() -> None:
        m = run.messengers["b"]
        creds = m.client.credentials
        assert creds is not None
        await m.client.revoke_session(creds.session_id)
        try:
            async for _event in m.events():
                pass
        except SessionRevoked:
            return
        raise AssertionError("the stream went on after its session was revoked")

    steps: list[tuple[str, Callable[[], Awaitable[str | None]]]] = [
        ("register", register),
        ("login", login),
        ("open_streams", open_streams),
        ("dm_a_to_b", lambda: dm("a", "b", "hello")),
        ("dm_b_to_a", lambda: dm("b", "a", "hello back")),
        ("read_receipt", read_receipt),
        ("edit", edit),
        ("reaction", reaction),
        ("history", history),
        ("revoke_closes_stream", revoke_closes_stream),
    ]
    for name, action in steps:
        if not await run.step(name, action):
            break
    for m in run.messengers.values():
        await m.close()
    await run.step("cleanup", lambda: _cleanup(run))
    for client in run.clients.values():
        await client.aclose()
    done = {r.name for r in run.results}
    run.results.sort(key=lambda r: STEPS.index(r.name))
    for name in STEPS:
        if name not in done:
            run.results.insert(STEPS.index(name), StepResult(name))


async def _cleanup(run: SmokeRun) -> str:
    if not run.users:
        return "no users were created"
    if run.admin_token:
        admin = run.clients.get("admin") or await _admin_client(run)
        for name in run.users:
            await admin.admin_deactivate(name)
        return f"deactivated {', '.join(run.users)}"
    for key in ("a", "b"):
        client = run.clients.get(key)
        if client is not None and client.logged_in:
            await client.logout()
    run.remaining_users = list(run.users)
    return f"logged out; no admin token (MELO_ADMIN_TOKEN), so {', '.join(run.users)} remain"


def _junit(path: Path, run: SmokeRun) -> None:
    import xml.etree.ElementTree as ET

    failures = sum(r.status == "failed" for r in run.results)
    skipped = sum(r.status == "not_run" for r in run.results)
    suite = ET.Element("testsuite", name="melo smoke", tests=str(len(run.results)), failures=str(failures),
                       errors="0", skipped=str(skipped),
                       time=f"{sum(r.duration_ms for r in run.results) / 1000:.3f}")
    for r in run.results:
        case = ET.SubElement(suite, "testcase", classname="melo.smoke", name=r.name, time=f"{r.duration_ms / 1000:.3f}")
        if r.status == "failed":
            ET.SubElement(case, "failure", message=r.detail).text = r.detail
        elif r.status == "not_run":
            ET.SubElement(case, "skipped", message="an earlier step failed")
        elif r.detail:
            ET.SubElement(case, "system-out").text = r.detail
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def smoke(
    ctx: typer.Context,
    registration_token: Annotated[
        str | None, typer.Option("--registration-token", metavar="T", help="register the users with this token")
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", metavar="FILE", dir_okay=False, help="also write JUnit XML here")
    ] = None,
    step_timeout: Annotated[float, typer.Option("--step-timeout", min=1, help="seconds allowed per step")] = 20.0,
    pause_after: Annotated[
        str | None, typer.Option("--pause-after", hidden=True, help="tests: wait for a stdin line after STEP")
    ] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Check a server end to end with two throwaway users; exit 0 if every step passed, else 6.

    Registers two users (open registration, --registration-token, or a token made with the admin access
    token in MELO_ADMIN_TOKEN), logs both in, opens live streams, sends an E2E direct message each way,
    checks delivery, read receipt, edit, reaction and history, and that revoking a session closes its
    stream. Then it deactivates both users (needs MELO_ADMIN_TOKEN; otherwise it logs them out and
    reports them under remaining_users). Works in a temporary directory: your profiles are untouched.

    Progress goes to stderr as steps run. JSON: {"ok", "server", "failed_step", "steps": [{"name",
    "status" (passed, failed, not_run), "duration_ms", "detail"}], "users", "remaining_users"}.
    """
    application = get_app(ctx, json_flag)
    out = application.output
    if pause_after is not None and pause_after not in STEPS:
        raise typer.BadParameter(f"not a step: {', '.join(STEPS)}", param_hint="--pause-after")
    server = application.server_url(application.store())
    os.environ["MELO_KEYRING"] = "file"  # the throwaway users' tokens stay in the temp dir, off the keyring

    def progress(step: str, status: str, detail: str) -> None:
        if out.json_mode:
            import json

            sys.stderr.write(json.dumps({"step": step, "status": status, "detail": detail}) + "\n")
            sys.stderr.flush()
        elif out.verbosity >= 0:
            out.err.print(f"smoke: {step} {status}{': ' + detail if detail else ''}", markup=False)

    with tempfile.TemporaryDirectory(prefix="melo-smoke-") as work:
        run = SmokeRun(server=server, work=Path(work), step_timeout=step_timeout, progress=progress,
                       pause_after=pause_after, registration_token=registration_token,
                       admin_token=os.environ.get("MELO_ADMIN_TOKEN") or None)
        asyncio.run(_smoke(run))

    failed = next((r for r in run.results if r.status == "failed"), None)
    doc = {
        "ok": failed is None,
        "server": server,
        "failed_step": failed.name if failed else None,
        "steps": [vars(r) for r in run.results],
        "users": run.users,
        "remaining_users": run.remaining_users,
    }
    if junit is not None:
        _junit(junit, run)
    out.emit(doc, lambda: out.table(
        ["Step", "Result", "Time", "Detail"],
        [[r.name, r.status.replace("_", " "), f"{r.duration_ms} ms" if r.status != "not_run" else "", r.detail]
         for r in run.results],
        title=f"melo smoke against {server}", no_wrap=["Step", "Result", "Time"]))
    if failed is not None:
        application.fail(f"smoke failed at step {failed.name}: {failed.detail}", code="smoke_failed",
                         exit_code=ExitCode.SMOKE, details={"step": failed.name})
