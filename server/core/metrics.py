"""The app's Prometheus metrics (served by ``/metrics`` in server/health.py)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Per-app registry, so several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "melo_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "melo_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.job_runs = Counter(
            "melo_job_runs_total", "Background job runs on this worker", ["job", "outcome"], registry=self.registry
        )
        self.jobs_leader = Gauge(
            "melo_jobs_leader", "1 while this worker holds the scheduler's lease", registry=self.registry
        )
