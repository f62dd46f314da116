"""Prometheus metrics, served by the API at `/metrics`.

Counters and histograms are kept by the process that sees the event: the API (HTTP requests,
submits), workers (started, finished, failed, retried; run time and queue wait) and the
reconciler (passes, repairs, rescued jobs). With `PROMETHEUS_MULTIPROC_DIR` set to a
directory all of them share (`jobsvc run` sets one up), `/metrics` adds them up across
processes; without it, `/metrics` shows the API process's own. Queue depth, ledger rows by
status and each queue's backlog (the autoscaling signals) are read when scraped.
"""

import os
import socket
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

from service.rows import JobRow

CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


if multiprocess():
    # Files are named by process; in containers every process may be pid 1, so the host
    # name is part of the name. This must happen before any metric below is made (a
    # metric makes its value files when defined), so it is the one thing this module does
    # at import, as prometheus-client itself reads PROMETHEUS_MULTIPROC_DIR at import.
    values.ValueClass = values.MultiProcessValue(  # type: ignore[no-untyped-call]
        lambda: f"{socket.gethostname()}-{os.getpid()}"
    )

_TIMES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

SUBMITTED = Counter("jobsvc_jobs_submitted_total", "Jobs recorded by the API", ["task"])
STARTED = Counter("jobsvc_jobs_started_total", "Attempts claimed by a worker", ["task"])
FINISHED = Counter("jobsvc_jobs_finished_total", "Jobs that finished", ["task"])
FAILED = Counter("jobsvc_jobs_failed_total", "Jobs that failed for good", ["task"])
RETRIED = Counter("jobsvc_jobs_retried_total", "Failed attempts scheduled again", ["task"])
RESCUED = Counter(
    "jobsvc_jobs_rescued_total", "Jobs whose worker was lost (lease expired)", ["task"]
)
RUN_SECONDS = Histogram(
    "jobsvc_job_run_seconds", "Time an attempt ran, by task", ["task"], buckets=_TIMES
)
QUEUE_WAIT_SECONDS = Histogram(
    "jobsvc_job_queue_wait_seconds",
    "Time from enqueued (or due) to claimed, by task",
    ["task"],
    buckets=_TIMES,
)
SUBMIT_GROUP_SIZE = Histogram(
    "jobsvc_submit_group_size",
    "Single submits recorded together by one insert (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
SCHEDULE_FIRES = Counter(
    "jobsvc_schedule_fires_total",
    "Schedule ticks the reconciler fired as jobs, or refused (task or args no longer valid)",
    ["outcome"],
)
THROTTLED = Counter(
    "jobsvc_limiter_throttles_total",
    "Jobs a limiter held back: a worker waited for its start (waited), sent it away to wait "
    "(deferred), or a task was told to slow down (backed_off)",
    ["limiter", "outcome"],
)
RECONCILE_PASSES = Counter("jobsvc_reconcile_passes_total", "Reconciler passes")
REPAIRS = Counter("jobsvc_reconcile_repairs_total", "What the reconciler repaired", ["repair"])
HTTP_REQUESTS = Counter(
    "jobsvc_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "jobsvc_http_request_seconds",
    "HTTP request time, to the end of the response",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
)


def started(row: JobRow) -> None:
    """A claimed attempt: counted, and how long it waited (enqueued, or due, → claimed)."""
    STARTED.labels(row.task).inc()
    since = row.enqueued_at or row.created_at
    waited = ((row.started_at or since) - since).total_seconds()
    QUEUE_WAIT_SECONDS.labels(row.task).observe(max(0.0, waited))


def exposition(current: dict[str, Any]) -> bytes:
    """The metrics text: counters (of every process, in multiprocess mode) and the gauges in
    `current` (`queue_depth` by queue, `ledger_rows` by status, `backlog`: queue → jobs
    waiting and the oldest one's wait in seconds), read just now."""
    now = CollectorRegistry()
    now.register(_Current(current))
    if multiprocess():
        counted = CollectorRegistry()
        MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
    else:
        counted = REGISTRY
    return generate_latest(counted) + generate_latest(now)


class _Current(Collector):
    def __init__(self, current: dict[str, Any]) -> None:
        self.current = current

    def collect(self) -> Any:
        depth = GaugeMetricFamily(
            "jobsvc_queue_depth", "Jobs waiting in each RQ queue", labels=["queue"]
        )
        for queue, n in sorted(self.current.get("queue_depth", {}).items()):
            depth.add_metric([queue], n)
        rows = GaugeMetricFamily(
            "jobsvc_ledger_jobs", "Jobs in the ledger, by status", labels=["status"]
        )
        for status, n in sorted(self.current.get("ledger_rows", {}).items()):
            rows.add_metric([status], n)
        backlog = GaugeMetricFamily(
            "jobsvc_queue_backlog",
            "Jobs due and waiting for a worker in each queue, by the ledger",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "jobsvc_queue_oldest_age_seconds",
            "How long the oldest job waiting in each queue has waited (0: none waits)",
            labels=["queue"],
        )
        for queue, (n, age_s) in sorted(self.current.get("backlog", {}).items()):
            backlog.add_metric([queue], n)
            oldest.add_metric([queue], round(age_s, 3))
        paused = GaugeMetricFamily(
            "jobsvc_queue_paused", "1 for a queue an operator paused, else 0", labels=["queue"]
        )
        for queue, is_paused in sorted(self.current.get("paused", {}).items()):
            paused.add_metric([queue], int(is_paused))
        held = GaugeMetricFamily(
            "jobsvc_jobs_held",
            "Jobs queued but held: their concurrency key is at its limit, or their queue paused",
            labels=["queue"],
        )
        for queue, n in sorted(self.current.get("held", {}).items()):
            held.add_metric([queue], n)
        parked = GaugeMetricFamily(
            "jobsvc_jobs_parked",
            "Jobs queued but parked: their owner has its fair share of the queue in flight",
            labels=["queue"],
        )
        for queue, n in sorted(self.current.get("parked", {}).items()):
            parked.add_metric([queue], n)
        tenants = GaugeMetricFamily(
            "jobsvc_tenant_backlog", "Each owner's queued jobs (parked ones too)", labels=["owner"]
        )
        for owner, n in sorted(self.current.get("tenants", {}).items()):
            tenants.add_metric([owner], n)
        yield from (depth, rows, backlog, oldest, paused, held, parked, tenants)
