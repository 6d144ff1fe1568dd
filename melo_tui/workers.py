"""`ui_work` and `ui_handler`: workers and handlers that touch widgets while their screen may be leaving.

A worker belongs to the screen (or app) that started it, and Textual cancels it only once that node has
closed. Children go first: when a screen is popped, or the app shuts down, its widgets are pruned while
the worker may still be waiting on the network. When the answer arrives, `query_one` finds nothing and
the worker would fail, and a failed worker takes the whole app down. `ui_work` treats a missing widget
as the end of the worker's job only while its node is going away; anywhere else it is still a bug and
still raised.

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
from textual.widget import MountError

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


def ui_work(
    *, exclusive: bool = False, group: str = "default", **options: Any
) -> Callable[[Callable[Concatenate[N, P], Awaitable[R]]], Callable[Concatenate[N, P], Any]]:
    """Like `textual.work`, for async methods of a screen, widget or the app."""

    def decorate(method: Callable[Concatenate[N, P], Awaitable[R]]) -> Callable[Concatenate[N, P], Any]:
        @functools.wraps(method)
        async def guarded(self: N, *args: P.args, **kwargs: P.kwargs) -> R | None:
            try:
                return await method(self, *args, **kwargs)
            except (NoMatches, MountError):
                if going_away(self):
                    return None
                raise

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
