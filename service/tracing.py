"""Traces across processes (OpenTelemetry), on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

The API's request spans come from FastAPI's instrumentation, outgoing HTTP calls' from
httpx's. A submit stores its request's W3C `traceparent` with the job
(`jobs.trace_context`), and the worker that runs the job continues that trace under the
`POST /jobs` span: `queue wait` (enqueued → claimed), `claim`, then `task <name>` around
the run and the outcome's write, with beneath it the task's own spans (a webhook's HTTP
call) and each bookkeeping statement (`ledger finish`, `ledger set_progress`, …; in a
forked work horse too). A completion callback's delivery job carries its job's trace
context, so one trace follows a job from `POST /jobs` to the callback. Spans go out over
OTLP/HTTP in batches; the standard `OTEL_*` variables configure the exporter
(`OTEL_SERVICE_NAME` overrides each process's name).

Off, every function here is a cheap no-op and OpenTelemetry is never imported.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from service.rows import JobRow

_provider: Any = None


def enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def setup(service_name: str) -> None:
    """Export this process's spans as `service_name`; trace its outgoing httpx calls."""
    global _provider
    if not enabled() or _provider is not None:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    _provider = TracerProvider(resource=Resource.create({"service.name": name}))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)
    HTTPXClientInstrumentor().instrument()


def instrument_app(app: Any) -> None:
    """Server spans for every request the app answers."""
    if _provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider)


def traceparent() -> str | None:
    """The W3C traceparent of the span running now (None when off or outside a span)."""
    if _provider is None:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def flush_spans() -> None:
    """Send what is buffered (a work horse ends with `os._exit`, which would drop it)."""
    if _provider is not None:
        _provider.force_flush(5000)


@contextmanager
def job_run(row: JobRow, claim_began: datetime) -> Iterator[None]:
    """The worker's part of the job's trace, just after its claim: `queue wait` and
    `claim` (over already, from their times), then `task <name>` as the current span for
    the block (so spans made inside, in this process or a work horse forked here, sit
    under it)."""
    if _provider is None or not row.trace_context:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    tracer = trace.get_tracer("jobsvc.worker")
    parent = extract({"traceparent": row.trace_context})
    attributes: dict[str, str | int] = {"jobsvc.job_id": str(row.id), "jobsvc.attempt": row.attempt}
    claimed = row.started_at or datetime.now(UTC)
    for name, start, end in (
        ("queue wait", row.enqueued_at or row.created_at, claimed),
        ("claim", claim_began, datetime.now(UTC)),
    ):
        span = tracer.start_span(name, parent, start_time=_ns(start), attributes=attributes)
        span.end(end_time=max(_ns(start), _ns(end)))
    with tracer.start_as_current_span(f"task {row.task}", parent, attributes=attributes):
        yield


@contextmanager
def statement(name: str) -> Iterator[None]:
    """A span for a ledger statement, under the span running now (none outside one)."""
    if _provider is None:
        yield
        return
    from opentelemetry import trace

    if not trace.get_current_span().get_span_context().is_valid:
        yield
        return
    with trace.get_tracer("jobsvc.ledger").start_as_current_span(f"ledger {name}"):
        yield


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000_000)
