"""`ui_work` and `ui_handler`: workers and handlers that touch widgets while their screen may be leaving.

A worker belongs to the screen (or app) that started it, and Textual cancels it only once that node has
closed. Children go first: when a screen is popped, or the app shuts down, its widgets are pruned while
the worker may still be waiting on the network. When the answer arrives, `query_one` finds nothing and
the worker would fail, and a failed worker takes the whole app down. `ui_work` treats a missing widget
as the end of the worker's job only while its node is going away; anywhere else it is still a bug and
still raised.

`ui_work` is also the TUI's one error path: a `MeloError` the SDK raises in the worker becomes one
notification, worded by `melo_tui.errors` from what the worker was doing (`what=`), instead of failing
the worker (which would take the app down). A worker that must do more on failure (give back a form,
keep an item for later) catches the error itself, does that, and re-raises it.

`ui_handler` does the same for a plain handler such as `on_mount`: a screen pushed as the app exits
gets its Mount after its children were pruned.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from textual import work
from textual.css.query import NoMatches
from textual.dom import DOMNode
from textual.notifications import SeverityLevel
from textual.widget import MountError

from melo_protocol.client.errors import MeloError
from melo_tui.errors import describe

P = ParamSpec("P")
R = TypeVar("R")
H = TypeVar("H", bound=Callable[..., Any])
N = TypeVar("N", bound=DOMNode)


def going_away(node: DOMNode) -> bool:
    """True once `node`, or the app it runs in, has begun to close."""
    app = node.app
    if not app.is_running:
        return True
    if node is app:
        return False
    # Textual marks every node of a subtree `_pruning` the moment its removal starts, before the children
    # go; there is no public flag for that window.
    closing = bool(getattr(node, "_pruning", False) or getattr(node, "_closing", False))
    return closing or getattr(node, "_closed", False) or not node.is_attached


Doing = str | Callable[..., str]  # what the worker does, or a function of its arguments that says it


def label(method: Callable[..., Any]) -> str:
    """The default ``what`` of a worker: its name as words ("load_chats" → "Load chats")."""
    return method.__name__.strip("_").replace("_", " ").capitalize()


def report(node: DOMNode, what: str, exc: MeloError, severity: SeverityLevel | None = None) -> None:
    """Show ``exc`` (raised while doing ``what``) as a notification, worded once by `melo_tui.errors`."""
    text, worded = describe(what, exc)
    node.notify(text, severity=severity or worded, markup=False)


def ui_work(
    *,
    exclusive: bool = False,
    group: str = "default",
    what: Doing | None = None,
    severity: SeverityLevel | None = None,
    **options: Any,
) -> Callable[[Callable[Concatenate[N, P], Awaitable[R]]], Callable[Concatenate[N, P], Any]]:
    """Like `textual.work`, for async methods of a screen, widget or the app. A `MeloError` becomes a
    notification about ``what`` (the default is the method's name), with the table's severity unless
    ``severity`` is given (a background refresh may want a warning)."""

    def decorate(method: Callable[Concatenate[N, P], Awaitable[R]]) -> Callable[Concatenate[N, P], Any]:
        @functools.wraps(method)
        async def guarded(self: N, *args: P.args, **kwargs: P.kwargs) -> R | None:
            try:
                return await method(self, *args, **kwargs)
            except (NoMatches, MountError):
                if going_away(self):
                    return None
                raise
            except MeloError as exc:
                if going_away(self):  # nobody is left to read it
                    return None
                doing = what(*args, **kwargs) if callable(what) else what or label(method)
                report(self, doing, exc, severity)
                return None

        return work(exclusive=exclusive, group=group, **options)(guarded)

    return decorate


def ui_handler(handler: H) -> H:
    """For a screen's or widget's sync handler that queries its children (`on_mount`, say)."""

    @functools.wraps(handler)
    def guarded(self: DOMNode, *args: Any, **kwargs: Any) -> Any:
        try:
            return handler(self, *args, **kwargs)
        except NoMatches:
            if going_away(self):
                return None
            raise

    return guarded  # type: ignore[return-value]
