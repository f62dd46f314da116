"""One trace across processes: the API's `POST /jobs`, then the worker's queue wait, claim
and task (with the webhook's HTTP call made in a forked work horse, and the outcome's
ledger write), then the completion callback's delivery — exported over OTLP/HTTP to a
receiver on loopback."""

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, NamedTuple

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.conftest import FAST, Stack, wait_until
from tests.support import QuietHandler, loopback_server

pytestmark = pytest.mark.e2e


class Span(NamedTuple):
    service: str
    name: str
    trace: str
    id: str
    parent: str


class Collector(QuietHandler):
    """An OTLP/HTTP trace receiver, and the webhook's and the callback's receiver."""

    spans: ClassVar[list[Span]] = []
    hits: ClassVar[list[str]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            if self.path == "/v1/traces":
                self.spans.extend(_spans(body))
            else:
                self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def _spans(body: bytes) -> Iterator[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    for resource in request.resource_spans:
        names = [a.value.string_value for a in resource.resource.attributes]
        keys = [a.key for a in resource.resource.attributes]
        service = names[keys.index("service.name")]
        for scope in resource.scope_spans:
            for span in scope.spans:
                yield Span(
                    service, span.name, span.trace_id.hex(), span.span_id.hex(),
                    span.parent_span_id.hex(),
                )  # fmt: skip


@pytest.fixture
def collector() -> Iterator[str]:
    Collector.spans, Collector.hits = [], []
    with loopback_server(Collector, "") as url:
        yield url


def test_one_trace_from_the_submit_to_the_callback(
    make_stack: Callable[..., Stack], collector: str
) -> None:
    stack = make_stack(
        OTEL_EXPORTER_OTLP_ENDPOINT=collector,
        OTEL_BSP_SCHEDULE_DELAY="100",
        JOBS_CALLBACK_SECRET="c" * 32,
        JOBS_WEBHOOK_ALLOW_PRIVATE="true",  # the receivers are on loopback
        **FAST,
    )
    stack.worker("w")  # forking: the webhook's call is made in a work horse
    stack.reconciler()
    body: dict[str, Any] = {
        "task": "call_webhook",
        "args": {"url": f"{collector}/hook", "payload": {"n": 1}},
        "callback_url": f"{collector}/callback",
    }
    r = stack.http.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    assert stack.wait(r.json()["id"])["status"] == "finished"

    def spans() -> list[Span]:
        with Collector.lock:
            return list(Collector.spans)

    def named(name: str) -> Span:
        [span] = [s for s in spans() if s.name == name]
        return span

    wait_until(
        lambda: (
            {"POST /jobs", "task call_webhook", "task deliver_callback"}
            <= {s.name for s in spans()}
        ),
        timeout=20,
        what="the API's, the job's and the callback's spans",
    )
    submit = named("POST /jobs")
    trace = [s for s in spans() if s.trace == submit.trace]
    assert submit.service == "jobsvc-api" and submit.parent == ""
    # each of the two jobs (the webhook's, then its callback's delivery): its queue wait,
    # claim and task, all under the submit
    for name, count in (("queue wait", 2), ("claim", 2), ("task call_webhook", 1),
                        ("task deliver_callback", 1)):  # fmt: skip
        found = [s for s in trace if s.name == name]
        assert len(found) == count, (name, json.dumps(trace))
        assert {(s.parent, s.service) for s in found} == {(submit.id, "jobsvc-worker")}
    task = named("task call_webhook")
    under_task = {s.name for s in trace if s.parent == task.id}
    assert "ledger finish" in under_task  # the outcome, written by the main process
    assert any(name.startswith("POST") for name in under_task)  # the horse's HTTP call
    assert "/hook" in Collector.hits and "/callback" in Collector.hits
