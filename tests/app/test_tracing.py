"""OpenTelemetry tracing: a request's spans through parsing, queueing, its batch and the model
call, in the SDK's in-memory exporter; off by default; the OTEL_* variables that turn it on;
and spans exported over OTLP/HTTP by a real server process to a receiver on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from app import tracing
from app.main import create_app
from app.settings import Settings
from bench.harness import PORT, ROOT, free_port, serve, without_settings


class _Switch(Sampler):
    """Records while on. OpenTelemetry's global provider is set once per process: when these
    tests end it stays, sampling nothing, so the rest of the suite runs as without tracing."""

    on = True

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "switch"


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter, sampler = InMemorySpanExporter(), _Switch()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    sampler.on = False
    exporter.clear()


@pytest.fixture
def exporter(provider: tuple[TracerProvider, InMemorySpanExporter]) -> InMemorySpanExporter:
    provider[1].clear()
    return provider[1]


def _traced(repository: Path, provider: TracerProvider, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(model_repository=repository, default_model="digits:1", **settings),
                                 tracer_provider=provider))  # fmt: skip


def _one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_a_request_is_traced_through_parsing_queueing_its_batch_and_the_model_call(
    repository, provider, exporter, digit_images
) -> None:
    with _traced(repository, provider[0]) as c:
        exporter.clear()  # the warm-up's
        r = c.post("/v1/score", json={"arrays": digit_images[:3].tolist()}, headers={"X-Request-ID": "traced-1"})
        assert r.status_code == 200
    spans = exporter.get_finished_spans()
    server = _one(spans, "POST /v1/score")
    parse, queue = _one(spans, "vaeserve.parse"), _one(spans, "vaeserve.queue")
    batch, model = _one(spans, "vaeserve.batch"), _one(spans, "vaeserve.model")
    assert {s.context.trace_id for s in (server, parse, queue, batch, model)} == {server.context.trace_id}
    assert _parent(parse) == _parent(queue) == server.context.span_id  # both inside the request
    assert _parent(batch) == queue.context.span_id  # the batch this request opened
    assert _parent(model) == batch.context.span_id
    labels = {tracing.MODEL: "digits:1", tracing.OPERATION: "score"}
    assert dict(model.attributes) == {**labels, tracing.BATCH_ROWS: 3}
    assert dict(batch.attributes) == {**labels, tracing.BATCH_ROWS: 3, tracing.BATCH_REQUESTS: 1}
    assert dict(queue.attributes) == {**labels, tracing.ROWS: 3, tracing.BATCH_ROWS: 3}
    assert [link.context.span_id for link in batch.links] == [queue.context.span_id]
    assert [link.context.span_id for link in queue.links] == [batch.context.span_id]
    assert parse.start_time >= server.start_time and parse.end_time <= queue.start_time  # parsed, then queued
    assert queue.end_time <= batch.start_time <= model.start_time and model.end_time <= batch.end_time
    assert batch.end_time <= server.end_time
    assert server.attributes["http.route"] == "/v1/score" and server.attributes["http.status_code"] == 200


def test_concurrent_requests_share_a_batch_span_linked_to_each(repository, provider, exporter, digit_images) -> None:
    """Four requests at once, with the batcher waiting long enough to gather them: one batch, four traces."""
    with _traced(repository, provider[0], batch_max_delay_us=1_000_000) as c:
        exporter.clear()
        start = threading.Barrier(4)

        def send(i: int) -> None:
            start.wait()
            assert c.post("/v1/encode", json={"arrays": digit_images[i : i + 1].tolist()}).status_code == 200

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    spans = exporter.get_finished_spans()
    queues = [s for s in spans if s.name == "vaeserve.queue"]
    batches = {s.context.span_id: s for s in spans if s.name == "vaeserve.batch"}
    assert len(queues) == 4 and len({q.context.trace_id for q in queues}) == 4  # four requests, four traces
    for queue in queues:  # each request points at its batch, and the batch back at it
        (link,) = queue.links
        batch = batches[link.context.span_id]
        assert queue.context.span_id in {b.context.span_id for b in batch.links}
        assert batch.attributes[tracing.BATCH_REQUESTS] == len(batch.links) == batch.attributes[tracing.BATCH_ROWS]
    assert max(b.attributes[tracing.BATCH_REQUESTS] for b in batches.values()) >= 2  # they did share one


def test_without_batching_the_model_call_is_a_child_of_the_request(repository, provider, exporter) -> None:
    with _traced(repository, provider[0], batching=False) as c:
        exporter.clear()
        r = c.post("/v2/models/digits-encoder/infer", json={"inputs": [{"name": "image", "shape": [1, 1, 28, 28],
                   "datatype": "FP32", "data": [0.0] * 784}]})  # fmt: skip
        assert r.status_code == 200
    spans = exporter.get_finished_spans()
    server, parse, model = (_one(spans, n) for n in ("POST /v2/models/{model_name}/infer", "vaeserve.parse",
                                                     "vaeserve.model"))  # fmt: skip
    assert _parent(parse) == _parent(model) == server.context.span_id
    assert not [s for s in spans if s.name in ("vaeserve.queue", "vaeserve.batch")]
    assert dict(model.attributes) == {tracing.MODEL: "digits:2", tracing.OPERATION: "encode", tracing.BATCH_ROWS: 1}


_OFF = """
import sys
from fastapi.testclient import TestClient
from opentelemetry import trace
from app import tracing
from app.main import create_app

with TestClient(create_app()) as client:
    assert client.post("/v1/encode", content=sys.stdin.buffer.read(), headers={"content-type": "image/png"}).status_code == 200
    span = tracing.start_span("probe")
    stack, layers = client.app.middleware_stack, []
    while stack is not None:
        layers.append(type(stack).__name__)
        stack = getattr(stack, "app", None)
print(type(trace.get_tracer_provider()).__name__, tracing.active(), span.is_recording(), "OpenTelemetryMiddleware" in layers)
"""


def test_tracing_is_off_without_otel_variables(digit_pngs) -> None:
    """In a fresh process with no OTEL_* variable: no SDK provider, no-op spans, no tracing middleware."""
    for env in ({}, {"OTEL_TRACES_EXPORTER": "none", "OTEL_SERVICE_NAME": "x"},
                {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}):  # fmt: skip
        assert tracing.provider_from_environment(env) is None
    clean = {k: v for k, v in without_settings().items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", _OFF], input=digit_pngs[0], env=clean, capture_output=True,
                          timeout=300, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["ProxyTracerProvider", "False", "False", "False"]


def test_otel_variables_choose_the_exporters_and_refuse_unknown_ones() -> None:
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "console"}) == ["console"]
    assert tracing.exporter_names({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) == ["otlp"]
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "otlp, console"}) == ["otlp", "console"]
    with pytest.raises(tracing.TracingConfigError, match="'zipkin' is not supported here; use otlp, console or none"):
        tracing.exporter_names({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(tracing.TracingConfigError, match="'grpc' is not supported here; use http/protobuf"):
        tracing.exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    provider = tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "console"})
    assert provider is not None and provider.resource.attributes["service.name"] == "vaeserve"
    provider.shutdown()


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps every ExportTraceServiceRequest it is sent."""

    received: ClassVar[list[ExportTraceServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_exports_its_spans_over_otlp_when_the_variables_say_so(digit_pngs) -> None:
    port = free_port()
    collector = ThreadingHTTPServer(("127.0.0.1", port), _Collector)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    env = without_settings(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}", OTEL_BSP_SCHEDULE_DELAY="100",
                           OTEL_SERVICE_NAME="vaeserve-test", VAESERVE_DRIFT_INTERVAL_S="0")  # fmt: skip
    try:
        with serve([sys.executable, "-m", "app", "--port", PORT, "--log-level", "warning"], env=env) as live:
            r = httpx.post(live.url + "/v1/score", content=digit_pngs[0], headers={"content-type": "image/png"},
                           timeout=60)  # fmt: skip
            assert r.status_code == 200
        # SIGTERM flushes the batch processor on the way out
    finally:
        collector.shutdown()
        collector.server_close()
    spans = [(resource.resource, span) for request in _Collector.received for resource in request.resource_spans
             for scope in resource.scope_spans for span in scope.spans]  # fmt: skip
    names = {span.name for _, span in spans}
    assert {"POST /v1/score", "vaeserve.parse", "vaeserve.queue", "vaeserve.batch", "vaeserve.model"} <= names
    assert "GET /readyz" not in names  # health checks are not traced
    services = {a.value.string_value for resource, _ in spans for a in resource.attributes if a.key == "service.name"}
    assert services == {"vaeserve-test"}
    model = next(span for _, span in spans if span.name == "vaeserve.model")
    attributes = {a.key: a.value for a in model.attributes}
    assert attributes[tracing.MODEL].string_value == "mnist-vae:1" and attributes[tracing.BATCH_ROWS].int_value == 1


def test_python_m_app_refuses_an_exporter_it_does_not_have() -> None:
    env = without_settings(OTEL_TRACES_EXPORTER="jaeger")
    done = subprocess.run([sys.executable, "-m", "app", "--port", str(free_port())], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: tracing: OTEL_TRACES_EXPORTER 'jaeger' is not supported here; use otlp, console or none"
    )
