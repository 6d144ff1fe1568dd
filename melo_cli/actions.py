"""Registered messenger actions: the work of `melo send`, `history`, `edit`… as ``fn(messenger, **params)``
returning the command's JSON document. A command runs its action here, or, while `melo listen` holds
the profile, hands it to that process (``melo_cli.control``). Kept free of heavy imports: every
command module imports it at start-up."""

from collections.abc import Awaitable, Callable
from typing import Any

MessengerAction = Callable[..., Awaitable[dict[str, Any]]]
ACTIONS: dict[str, MessengerAction] = {}
MODULES = ("melo_cli.commands.messages", "melo_cli.commands.schedule")  # where the actions are defined


def messenger_action(name: str) -> Callable[[MessengerAction], MessengerAction]:
    """Register ``fn(messenger, **params) -> dict`` under ``name``: run here, or by a listening process."""

    def register(fn: MessengerAction) -> MessengerAction:
        ACTIONS[name] = fn
        return fn

    return register


def load_actions() -> dict[str, MessengerAction]:
    """Every action (their modules register them as they are imported)."""
    import importlib

    for module in MODULES:
        importlib.import_module(module)
    return ACTIONS
