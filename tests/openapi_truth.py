"""Holds the OpenAPI document to what servers under test really answered.

Every app the tests start counts its answers by (method, route template, status) in its metrics
(``melo_http_requests_total``). When a test's server stops, each status it gave below 500 must be declared
on that operation in /openapi.json, so the whole suite checks the document, not a hand-picked sample.
Unmatched paths and methods a path does not serve (404, 405) belong to no operation and are skipped; a
5xx is a bug that the test seeing it reports on its own.
"""

from collections.abc import Iterable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "melo_http_requests"


def undeclared(spec: dict[str, Any], observed: Iterable[tuple[str, str, int]]) -> list[str]:
    """``METHOD path status`` for each observed answer the document does not declare."""
    missing = set()
    for method, route, status in observed:
        operation = spec["paths"].get(route, {}).get(method.lower())
        if operation is None or status >= 500:
            continue
        if str(status) not in operation["responses"]:
            missing.add(f"{method} {route} {status}")
    return sorted(missing)


def _answers(families: Iterable[Any]) -> list[tuple[str, str, int]]:
    out = []
    for family in families:
        if family.name != REQUESTS:
            continue
        for sample in family.samples:
            if sample.name == REQUESTS + "_total" and sample.value > 0:
                labels = sample.labels
                out.append((labels["method"], labels["route"], int(labels["status"])))
    return out


def assert_app_declared(app: Any) -> None:
    """For an app run in this process (its metrics object is at hand)."""
    missing = undeclared(app.openapi(), _answers(app.state.metrics.registry.collect()))
    assert not missing, f"answers not declared in the OpenAPI document: {missing}"


def assert_server_declared(url: str) -> None:
    """For a server in another process: its /metrics and /openapi.json."""
    with httpx.Client(base_url=url, timeout=30.0) as http:
        metrics = http.get("/metrics")
        spec = http.get("/openapi.json")
    metrics.raise_for_status()
    spec.raise_for_status()
    missing = undeclared(spec.json(), _answers(text_string_to_metric_families(metrics.text)))
    assert not missing, f"answers of {url} not declared in its OpenAPI document: {missing}"
