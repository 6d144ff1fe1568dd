"""Exact integer bounds in ``/openapi.json``.

FastAPI passes the component schemas through its OpenAPI model, whose ``minimum``/``maximum`` are floats:
``le=2**63 - 1`` would come out as ``9.223372036854776e+18`` (that is 2**63, one past the range) and
``ge=1`` as ``1.0``. Every integer on the wire is a signed 64-bit integer (``melo_protocol.wire.bounds``),
so a bound is put back as an integer within that range.
"""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from melo_protocol.wire.bounds import INT64_MAX

INT64_MIN = -INT64_MAX - 1
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _restore(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _restore(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "integer":
        for key in _BOUNDS:
            value = node.get(key)
            if isinstance(value, float) and value.is_integer():
                node[key] = min(max(int(value), INT64_MIN), INT64_MAX)
    for child in node.values():
        _restore(child)


def keep_integer_bounds_exact(app: FastAPI) -> None:
    """Wrap whatever builds the app's OpenAPI document (FastAPI's default or a custom hook)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        _restore(document)  # the document is cached and restored in place: a second pass changes nothing
        return document

    app.openapi = openapi  # type: ignore[method-assign]
