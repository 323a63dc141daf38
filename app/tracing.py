"""OpenTelemetry tracing: off unless the standard OTEL_* environment variables turn it on.

    OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 python -m app   # OTLP over HTTP (protobuf)
    OTEL_TRACES_EXPORTER=console python -m app                        # spans as JSON on stdout

On when OTEL_TRACES_EXPORTER names an exporter (`otlp`, `console`; `none` is off) or an OTLP
endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); off when
OTEL_SDK_DISABLED=true. Everything else follows the SDK's own variables: OTEL_SERVICE_NAME
(default `vaeserve`), OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_*,
OTEL_EXPORTER_OTLP_*; OTEL_PYTHON_FASTAPI_EXCLUDED_URLS (default: health and /metrics).
W3C `traceparent` headers join a caller's trace.

The spans of one request (docs/monitoring.md#tracing):

    POST /v1/score                 the server span (opentelemetry-instrumentation-fastapi)
      vaeserve.parse               the body into images (app/api/inputs.py, app/api/oip.py)
      vaeserve.queue               waiting in the model's micro-batcher; links to the batch it joined
        vaeserve.batch             that batch, a child of the request that opened it and linked to all it served
          vaeserve.model           the ONNX Runtime call: model, operation, rows

Code starts its spans with `start_span`, `span` and `traced` below: until `install` has set
a provider they make no OpenTelemetry call at all (OpenTelemetry's own no-op spans cost tens
of microseconds a request on a busy core; a flag costs nothing measurable).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:  # the SDK is imported only when tracing is on
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

tracer = trace.get_tracer("vaeserve")  # a proxy: it follows the provider `install` sets
_active = False  # whether `install` has run in this process: spans are started only then
F = TypeVar("F", bound=Callable[..., Any])

# Span attributes, named once.
MODEL = "vaeserve.model"  # name:version
OPERATION = "vaeserve.operation"  # encode, decode, score
BATCH_ROWS = "vaeserve.batch.size"  # rows in the ONNX Runtime call
BATCH_REQUESTS = "vaeserve.batch.requests"  # requests whose rows it holds
ROWS = "vaeserve.rows"  # this request's rows

_QUIET_URLS = "/healthz,/readyz,/metrics,/v2/health/live,/v2/health/ready"


class TracingConfigError(ValueError):
    """OTEL_* variables ask for something this service cannot do."""


def provider_from_environment(environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """An SDK tracer provider exporting where OTEL_* say, or None when they leave tracing off.

    Raises TracingConfigError for an exporter or protocol this service does not have.
    """
    env = os.environ if environ is None else environ
    names = exporter_names(env)
    if not names:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):  # neither variable names it
        resource = resource.merge(Resource({SERVICE_NAME: "vaeserve"}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    log.info("tracing on, exporting to %s", ", ".join(names))
    return provider


def exporter_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters OTEL_* ask for; empty when tracing is off. TracingConfigError for one
    this service does not have, so `python -m app` can refuse to start with one line."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp" if endpoint else "").split(",")]
    names = [n for n in names if n and n != "none"]
    for name in names:
        if name not in ("otlp", "console"):
            raise TracingConfigError(f"OTEL_TRACES_EXPORTER {name!r} is not supported here; use otlp, console or none")
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    if "otlp" in names and protocol not in ("", "http/protobuf"):
        raise TracingConfigError(f"OTLP protocol {protocol!r} is not supported here; use http/protobuf")
    return names


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*


def active() -> bool:
    """Whether spans are recorded in this process (`install` has run)."""
    return _active


def start_span(name: str, attributes: Attributes = None, context: Context | None = None,
               start_time: int | None = None) -> trace.Span:  # fmt: skip
    """A span started now (not made current), or OpenTelemetry's no-op INVALID_SPAN while tracing is off."""
    if not _active:
        return trace.INVALID_SPAN
    return tracer.start_span(name, context=context, attributes=attributes, start_time=start_time)


def span(name: str, attributes: Attributes = None, context: Context | None = None) -> AbstractContextManager[Any]:
    """`with span(...)`: a span, current inside the block; nothing while tracing is off."""
    if not _active:
        return nullcontext()
    return tracer.start_as_current_span(name, context=context, attributes=attributes)


def traced(name: str) -> Callable[[F], F]:
    """Decorate a function (plain or async) so that each call is a span `name` while tracing is on."""

    def decorate(function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                with span(name):
                    return await function(*args, **kwargs)

            return call_async  # type: ignore[return-value]

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            with span(name):
                return function(*args, **kwargs)

        return call  # type: ignore[return-value]

    return decorate


def install(app: FastAPI, provider: TracerProvider) -> None:
    """Trace `app`'s requests with `provider`, which becomes the process's provider (the first one
    installed stays: OpenTelemetry sets it once per process)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    global _active
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider)
    _active = True
    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS") or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls=excluded or _QUIET_URLS, exclude_spans=["receive", "send"]
    )
