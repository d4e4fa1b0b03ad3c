"""Prometheus metrics of one dispatcher replica (`GET /metrics`).

Counters and histograms count what this replica did (sum them over replicas). The gauges describe the
shared queue and fleet: they are read from the database at each scrape, so every replica reports the
same values (take max or any one of them, not the sum).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
_RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_DECISION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class DispatcherMetrics:
    def __init__(self) -> None:
        # A registry per app, so several dispatchers (tests, benchmarks) can live in one process.
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.queue_depth = Gauge(
            "cc_dispatcher_queue_depth", "Jobs per non-final status", ["status"], registry=r
        )
        self.waiting_for_capability = Gauge(
            "cc_dispatcher_jobs_waiting_for_capability",
            "Pending jobs that no live instance can run (their node classes are not offered)",
            registry=r,
        )
        self.instances = Gauge(
            "cc_dispatcher_instances", "Registered instances per state", ["state"], registry=r
        )
        self.dispatched = Counter(
            "cc_dispatcher_jobs_dispatched", "Jobs handed to an instance (accepted hand-offs)", registry=r
        )
        self.handoff_failures = Counter(
            "cc_dispatcher_handoff_failures",
            "Hand-offs not accepted, by reason (full, unreachable, rejected, no_answer)",
            ["reason"],
            registry=r,
        )
        self.retried = Counter(
            "cc_dispatcher_jobs_retried", "Jobs re-queued after their lease expired", registry=r
        )
        self.exhausted = Counter(
            "cc_dispatcher_jobs_attempts_exhausted",
            "Jobs set to error after losing their worker on every allowed attempt",
            registry=r,
        )
        self.timed_out = Counter(
            "cc_dispatcher_jobs_timed_out", "Jobs ended by a deadline", ["kind"], registry=r
        )
        self.cancelled = Counter(
            "cc_dispatcher_jobs_cancelled", "Cancel requests that took effect", ["when"], registry=r
        )
        self.lost_instances = Counter(
            "cc_dispatcher_instances_lost", "Instances marked lost (missed heartbeats)", registry=r
        )
        self.submit_to_start = Histogram(
            "cc_dispatcher_submit_to_start_seconds",
            "From submission to the first accepted hand-off to an instance",
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.execution = Histogram(
            "cc_dispatcher_execution_seconds",
            "From start (in_progress) to the end of the jobs this replica handed out, by final status",
            ["status"],
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        self.pass_seconds = Histogram(
            "cc_dispatcher_pass_seconds",
            "Database side of one scheduling pass (one statement: lock free instances, claim, commit)",
            buckets=_DECISION_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
