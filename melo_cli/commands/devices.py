"""``melo devices list [USER]`` and ``melo verify USER [--sas]``: see and verify end-to-end identities.

Who starts a SAS verification: both people run ``melo verify OTHER --sas``. The side whose
(username, device id) sorts first sends the start; the other waits for it (it is queued by the server,
so the order in which the two commands are started does not matter). ``--wait`` makes a side wait for a
start in any case (to answer a verification started from the TUI or another client).
"""

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.errors import CliError, ExitCode
from melo_cli.options import JsonOpt, YesOpt, command_group

if TYPE_CHECKING:
    from melo_protocol.client.messenger import Messenger

app = command_group("End-to-end devices: their ids, fingerprints and your trust in them.")

UserArg = Annotated[str, typer.Argument(metavar="USER", help="a username (a leading @ is allowed)")]


def fingerprint(key: str | None) -> str:
    """An ed25519 key in groups of four, as people read it aloud."""
    if not key:
        return ""
    return " ".join(key[i:i + 4] for i in range(0, len(key), 4))


def _username(value: str) -> str:
    return value.removeprefix("@").strip()


@app.command("list")
def list_devices(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Argument(metavar="[USER]", help="whose devices (default: yours)")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Devices of a user (yours by default): id, ed25519 fingerprint, your trust, and which is this one.

    JSON: {"user": U, "devices": [{"device_id", "ed25519", "trust", "current"}…]}; trust is unverified,
    verified or blocked.
    """
    application = get_app(ctx, json_flag)

    async def go(m: "Messenger") -> dict[str, Any]:
        name = _username(user) if user else m.username
        devices = await m.devices(name)
        return {"user": name, "devices": [
            {"device_id": d["device_id"], "ed25519": d["ed25519"], "trust": d["trust"], "current": d["current"]}
            for d in sorted(devices, key=lambda d: d["device_id"])
        ]}

    doc = application.run_messenger(go)
    out = application.output

    def human() -> None:
        if not doc["devices"]:
            out.result(f"{doc['user']} has no devices with end-to-end keys.")
            return
        out.table(["", "Device", "Fingerprint (ed25519)", "Trust"],
                  [["*" if d["current"] else "", d["device_id"], fingerprint(d["ed25519"]), d["trust"]]
                   for d in doc["devices"]],
                  title=f"Devices of {doc['user']}", no_wrap=["Device", "Fingerprint (ed25519)"])

    out.emit(doc, human)


def verify(
    ctx: typer.Context,
    user: UserArg,
    sas: Annotated[bool, typer.Option("--sas", help="compare emoji live with the other device")] = False,
    device: Annotated[str | None, typer.Option("--device", metavar="ID", help="only this device of USER")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="with --sas: wait for the other side to start")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="with --sas: give up after S seconds")] = 120.0,
    yes: YesOpt = False,
    json_flag: JsonOpt = False,
) -> None:
    """Verify USER's devices: compare the safety number (and QR) in person, or run SAS with --sas.

    Without --sas: prints the safety number and a QR code; on a terminal asks whether they match.
    --yes marks USER's devices verified without asking (after you compared out of band); without a
    terminal and without --yes nothing is marked.

    With --sas both people run `melo verify OTHER --sas`; the side whose username (then device id) sorts
    first starts, the other waits (--wait always waits). Both see 7 emoji and 3 numbers and confirm
    they match (--yes confirms without asking: the MAC exchange still proves the keys).

    Exit 5 when the codes differ, the other side cancels, or the verification times out.
    JSON: {"user", "method", "verified", "devices", …safety_number / emoji, decimals}.
    """
    application = get_app(ctx, json_flag)
    name = _username(user)
    if sas:
        doc = application.run_messenger(lambda m: _run_sas(application, m, name, device, wait, timeout, yes),
                                        live=True)
        application.output.emit(doc, lambda: application.output.result(
            f"Verified {name}'s device {doc['devices'][0]}"))
        return
    _safety_number(application, name, device, yes)


def _safety_number(application: Any, name: str, device: str | None, yes: bool) -> None:
    out = application.output

    async def show(m: "Messenger") -> dict[str, Any]:
        devices = [d for d in await m.devices(name) if device is None or d["device_id"] == device]
        if not devices:
            raise CliError(f"{name} has no device {device}" if device else f"{name} has no devices with keys",
                           code="device_not_found")
        digits, qr = await m.safety_number(name)
        return {"user": name, "method": "safety_number", "safety_number": digits, "qr": qr,
                "devices": [d["device_id"] for d in devices], "verified": False}

    doc = application.run_messenger(show)
    interactive = not yes and sys.stdin.isatty() and not out.json_mode
    if not out.json_mode:
        out.out.print(f"Safety number with {name}:", markup=False)
        out.out.print(doc["safety_number"], markup=False)
        out.out.print(doc["qr"], markup=False, highlight=False)
    if yes or (interactive and typer.confirm("Do they match?", default=False, err=True)):
        async def mark(m: "Messenger") -> None:
            for d in await m.devices(name):
                if d["device_id"] in doc["devices"]:
                    m.mark_verified(*await _user_device(m, name, d["device_id"]))

        application.run_messenger(mark)
        doc["verified"] = True
        out.emit(doc, lambda: out.result(f"Marked {name}'s devices verified: {', '.join(doc['devices'])}"))
        return
    if interactive:
        application.fail(f"the safety numbers do not match: {name}'s devices stay unverified",
                         code="verification_mismatch", exit_code=ExitCode.TRUST)
    out.emit(doc, lambda: out.result("Not marked verified: compare the numbers, then run with --yes."))


async def _user_device(m: "Messenger", name: str, device_id: str) -> tuple[int, str]:
    user = await m.client.get_user(name)
    return user.id, device_id


async def _run_sas(application: Any, m: "Messenger", name: str, device: str | None, wait: bool, timeout: float,
                   yes: bool) -> dict[str, Any]:
    import asyncio

    from melo_protocol.client import events as ev

    out = application.output
    devices = [d for d in await m.devices(name) if not d["current"]]
    if device is not None:
        devices = [d for d in devices if d["device_id"] == device]
    if not devices:
        raise CliError(f"{name} has no other device {device or ''} to verify".replace("  ", " "),
                       code="device_not_found")
    initiate = False
    if not wait:
        if len(devices) > 1:
            raise CliError(f"{name} has {len(devices)} devices: pass --device ID (see `melo devices list {name}`)",
                           code="device_ambiguous")
        initiate = (m.username, m.device_id) < (name, devices[0]["device_id"])
    wanted = {d["device_id"] for d in devices}
    txn: str | None = None
    verification: Any = None
    sas_doc: dict[str, Any] | None = None
    if initiate:
        verification = await m.start_sas(name, devices[0]["device_id"])
        txn = verification.transaction_id
        out.info(f"Started verification with {name} ({devices[0]['device_id']}); waiting for them…")
    else:
        out.info(f"Waiting for {name} to start the verification (they run `melo verify {m.username} --sas`)…")

    def fail(message: str) -> CliError:
        return CliError(message, code="verification_failed", exit_code=ExitCode.TRUST)

    try:
        async with asyncio.timeout(timeout):
            async for event in m.events():
                if not isinstance(event, ev.VerificationUpdate) or event.user != name:
                    continue
                event_txn = event.data.get("transaction_id")
                if txn is None and event.state == "created" and event.device_id in wanted:
                    txn = str(event_txn)
                    verification = await m.accept_sas(txn)
                    continue
                if event_txn != txn:
                    continue
                if event.state == "cancelled":
                    raise fail(f"{name} cancelled the verification, or the keys did not match")
                if event.state == "keys_exchanged":
                    emoji = verification.emoji()
                    decimals = list(verification.decimals())
                    if not out.json_mode:
                        out.out.print("  ".join(f"{e} {n}" for e, n in emoji), markup=False)
                        out.out.print("  ".join(str(d) for d in decimals), markup=False)
                    elif not yes:
                        out.err.print("  ".join(f"{e} {n}" for e, n in emoji), markup=False)
                    match = yes or _ask_match()
                    result = await m.confirm_sas(txn, match=match)
                    if not match:
                        raise fail(f"the codes differ: {name}'s device is not verified")
                    if result.state.value == "verified":
                        return _sas_doc(name, event.device_id, emoji, decimals)
                    sas_doc = _sas_doc(name, event.device_id, emoji, decimals)
                    continue
                if event.state == "verified" and sas_doc is not None:
                    return sas_doc
    except TimeoutError:
        raise fail(f"verification with {name} timed out after {timeout:g} s") from None
    raise fail("the live stream ended before the verification finished")


def _ask_match() -> bool:
    try:
        return typer.confirm("Do the emoji and numbers match on both devices?", default=False, err=True)
    except typer.Abort:  # end of input: no answer is no match
        return False


def _sas_doc(name: str, device_id: str, emoji: list[tuple[str, str]], decimals: list[int]) -> dict[str, Any]:
    return {"user": name, "method": "sas", "verified": True, "devices": [device_id],
            "emoji": [{"emoji": e, "name": n} for e, n in emoji], "decimals": decimals}
