"""``melo push``: web push subscriptions of this device (RFC 8030; UnifiedPush distributors, ntfy topics).

A push carries no message text: the chat id and an unread count (the sender's name only with
--include-sender). A UnifiedPush distributor or ntfy gives the endpoint URL; the subscription's keys
(p256dh, auth) come from whatever decrypts the pushes on the device.
"""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import JsonOpt, command_group, iso, short_time, yes_no

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.wire.jobs import PushSubscriptionOut

app = command_group("Web push for this device when it is offline (UnifiedPush, ntfy): subscribe, list, remove.")


def subscription_doc(sub: "PushSubscriptionOut") -> dict[str, Any]:
    return {
        "subscription_id": sub.id,
        "endpoint": sub.endpoint,
        "device_id": sub.device_id,
        "include_sender": sub.include_sender,
        "current_device": sub.current_device,
        "created_at": iso(sub.created_at),
        "last_success_at": iso(sub.last_success_at),
    }


@app.command("vapid")
def vapid(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """The server's VAPID public key (the applicationServerKey a push distributor may ask for).

    JSON: {"public_key", "kid", "algorithm"}
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        key = await client.push_vapid()
        return {"public_key": key.public_key, "kid": key.kid, "algorithm": key.algorithm}

    doc = application.run(go)
    application.output.emit(doc, lambda: application.output.result(doc["public_key"]))


@app.command("subscribe")
def subscribe(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT", help="the push endpoint URL (https://)")],
    p256dh: Annotated[str, typer.Option("--p256dh", metavar="KEY",
                                        help="the subscription's P-256 public key (base64url, uncompressed)")],
    auth: Annotated[str, typer.Option("--auth", metavar="SECRET", help="the 16-byte auth secret (base64url)")],
    include_sender: Annotated[bool, typer.Option(
        "--include-sender", help="put the sender's username in pushes (never the message)")] = False,
    json_flag: JsonOpt = False,
) -> None:
    """Send pushes for this device to ENDPOINT (again with the same endpoint: update it).

    JSON: {subscription_id, endpoint, device_id, include_sender, current_device, created_at, last_success_at}
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return subscription_doc(await client.push_subscribe(endpoint, p256dh, auth, include_sender))

    doc = application.run(go)
    application.output.emit(doc, lambda: application.output.result(
        f"Push subscription {doc['subscription_id']} for this device: {doc['endpoint']}"))


@app.command("list")
def list_subscriptions(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """Push subscriptions of all your devices; "this" marks this device's.

    JSON: {"subscriptions": [{subscription_id, endpoint, device_id, include_sender, current_device,
    created_at, last_success_at}]}
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return {"subscriptions": [subscription_doc(s) for s in await client.push_list()]}

    doc = application.run(go)
    out = application.output

    def human() -> None:
        if not doc["subscriptions"]:
            out.result("No push subscriptions.")
            return
        out.table(["ID", "Device", "Endpoint", "Sender", "Last push"],
                  [[s["subscription_id"], s["device_id"] + (" (this)" if s["current_device"] else ""),
                    s["endpoint"], yes_no(s["include_sender"]), short_time(s["last_success_at"])]
                   for s in doc["subscriptions"]],
                  no_wrap=["ID"])

    out.emit(doc, human)


@app.command("remove")
def remove(
    ctx: typer.Context,
    subscription_id: Annotated[int, typer.Argument(metavar="ID", help="a subscription id (`melo push list`)")],
    json_flag: JsonOpt = False,
) -> None:
    """Stop pushes to one of your subscriptions. JSON: {"subscription_id", "removed": true}."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        await client.push_unsubscribe(subscription_id)
        return {"subscription_id": subscription_id, "removed": True}

    doc = application.run(go)
    application.output.emit(doc, lambda: application.output.result(f"Removed push subscription {subscription_id}"))
